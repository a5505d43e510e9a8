# Stand-ins for OpenWrt's /lib/functions.sh (UCI) and procd.sh, for
# sourcing tunneld.init under a plain sh. The configuration is in shell
# variables set before this file is read (as functions.sh keeps it):
#   CONFIG_SECTIONS="name..."  CONFIG_<name>_TYPE=tunneld
#   CONFIG_<name>_<option>=value
#   CONFIG_<name>_<list>_LENGTH=N  CONFIG_<name>_<list>_ITEM1..N=value
# Each procd call prints one line: its name and arguments, separated by
# the unit separator (octal 037).

config_load() {
	__stub_call config_load "$@"
}

config_foreach() {
	__fe_fn="$1"
	__fe_type="$2"
	shift 2
	for __fe_s in $CONFIG_SECTIONS; do
		eval "__fe_t=\${CONFIG_${__fe_s}_TYPE}"
		[ "$__fe_t" = "$__fe_type" ] && "$__fe_fn" "$__fe_s" "$@"
	done
	return 0
}

# config_get VAR SECTION OPTION [DEFAULT]: DEFAULT when OPTION is unset or
# empty, as functions.sh's ${...:-...} gives.
config_get() {
	eval "__g_v=\${CONFIG_${2}_${3}:-\$4}"
	eval "$1=\$__g_v"
}

config_get_bool() {
	config_get __b_v "$2" "$3" "$4"
	case "$__b_v" in
	1|on|true|yes|enabled) __b_v=1 ;;
	0|off|false|no|disabled) __b_v=0 ;;
	*) __b_v="$4" ;;
	esac
	eval "$1=\$__b_v"
}

config_list_foreach() {
	__l_sec="$1"
	__l_opt="$2"
	__l_fn="$3"
	shift 3
	eval "__l_n=\${CONFIG_${__l_sec}_${__l_opt}_LENGTH:-0}"
	__l_i=1
	while [ "$__l_i" -le "$__l_n" ]; do
		eval "__l_v=\${CONFIG_${__l_sec}_${__l_opt}_ITEM${__l_i}}"
		"$__l_fn" "$__l_v" "$@"
		__l_i=$((__l_i + 1))
	done
}

__stub_call() {
	__c_line="$1"
	shift
	for __c_a in "$@"; do
		__c_line="$__c_line$(printf '\037')$__c_a"
	done
	printf '%s\n' "$__c_line"
}

# procd.sh keeps the instance being built in JSON: a jail mount without
# procd_add_jail before it in the instance is dropped there, an error here.
__stub_jail=0
procd_open_instance() { __stub_jail=0; __stub_call procd_open_instance "$@"; }
procd_set_param() { __stub_call procd_set_param "$@"; }
procd_append_param() { __stub_call procd_append_param "$@"; }
procd_close_instance() { __stub_call procd_close_instance "$@"; }
procd_add_jail() { __stub_jail=1; __stub_call procd_add_jail "$@"; }
procd_add_jail_mount() {
	if [ "$__stub_jail" != 1 ]; then
		echo "procd_add_jail_mount $*: no procd_add_jail before it" >&2
		exit 1
	fi
	__stub_call procd_add_jail_mount "$@"
}
procd_add_reload_trigger() { __stub_call procd_add_reload_trigger "$@"; }
