# Turn Kconfig defaults, overridden by an optional .config and then by
# set="CONFIG_A=v CONFIG_B=v" (make's command line), into config.h.
# Usage: awk [-v set=...] -f scripts/config.awk Kconfig [.config]
#        awk -v fmt=mk [-v set=...] -f scripts/config.awk Kconfig [.config]  (for make)
# A bool is y/n or 1/0, and 0 when the bool it "depends on" is 0. Every symbol becomes CONFIG_NAME 0/1 or a number,
# behind #ifndef so a packager can override one with -DCONFIG_NAME=...
# without patching; for make, an override of the command line.
FNR == 1 { file++ }
file == 1 && $1 == "config" { name = $2; order[++n] = name; next }
file == 1 && ($1 == "bool" || $1 == "int") && name != "" { type[name] = $1; next }
file == 1 && $1 == "default" && name != "" && !(name in val) { val[name] = $2; next }
file == 1 && $1 == "range" && name != "" { lo[name] = $2; hi[name] = $3; next }
file == 1 && $1 == "depends" && $2 == "on" && name != "" { dep[name] = $3; next }
file == 2 && /^CONFIG_[A-Z0-9_]+=/ {
	split($0, kv, "="); sub(/^CONFIG_/, "", kv[1])
	if (kv[1] in type) val[kv[1]] = kv[2]
	next
}
file == 2 && /^# CONFIG_[A-Z0-9_]+ is not set/ {
	s = $2; sub(/^CONFIG_/, "", s)
	if (s in type) val[s] = "n"
	next
}
END {
	k = split(set, kvs, " ")
	for (i = 1; i <= k; i++) {
		split(kvs[i], kv, "="); sub(/^CONFIG_/, "", kv[1])
		if (kv[1] in type) val[kv[1]] = kv[2]
	}
	if (fmt == "mk")
		print "# Generated from Kconfig, .config and the command line by scripts/config.awk; do not edit."
	else {
		print "/* Generated from Kconfig, .config and the command line by scripts/config.awk; do not edit. */"
		print "#ifndef CONFIG_H"
		print "#define CONFIG_H"
	}
	for (i = 1; i <= n; i++) {
		s = order[i]; v = val[s]
		if (type[s] == "bool") v = (v == "y" || v == "1") && (!(s in dep) || out[dep[s]]) ? 1 : 0
		else if (v !~ /^[0-9]+$/ || (s in lo && (v + 0 < lo[s] || v + 0 > hi[s]))) {
			printf ".config: CONFIG_%s=%s is not a number from %s to %s\n", s, v, lo[s], hi[s] > "/dev/stderr"
			exit 1
		}
		out[s] = v
		if (fmt == "mk")
			printf "override CONFIG_%s := %s\n", s, v
		else
			printf "#ifndef CONFIG_%s\n#define CONFIG_%s %s\n#endif\n", s, s, v
	}
	if (fmt != "mk")
		print "#endif"
}
