/* The command-line reader against the C library's getopt_long(), tunneld's
 * own option table and option string, on argument vectors that try each
 * form: clusters, values attached or apart, abbreviations (unique and
 * ambiguous), "--name=VALUE" to options with and without values, operands
 * before, between and after options, "--" and "-". Each step compares the
 * option returned, its value and, on an error, the element named; at the
 * end, the first operand. */
#include <getopt.h>
#include <string.h>

#include "check.h"
#include "opt.h"

#define SHORTS "l:a:u:r:c:k:vVh"

static const struct option glibc_longs[] = {
	{ "listen", required_argument, 0, 'l' }, { "acl", required_argument, 0, 'a' },
	{ "users", required_argument, 0, 'u' }, { "realm", required_argument, 0, 'r' },
	{ "hash-password", no_argument, 0, 7 }, { "cert", required_argument, 0, 'c' },
	{ "key", required_argument, 0, 'k' }, { "http-tunnel", optional_argument, 0, 8 },
	{ "max-sessions", required_argument, 0, 10 }, { "max-conns", required_argument, 0, 4 },
	{ "user", required_argument, 0, 5 }, { "verbose", no_argument, 0, 'v' },
	{ "version", no_argument, 0, 'V' }, { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
};
static const struct opt_long our_longs[] = {
	{ "listen", OPT_REQUIRED, 'l' }, { "acl", OPT_REQUIRED, 'a' },
	{ "users", OPT_REQUIRED, 'u' }, { "realm", OPT_REQUIRED, 'r' },
	{ "hash-password", OPT_NONE, 7 }, { "cert", OPT_REQUIRED, 'c' },
	{ "key", OPT_REQUIRED, 'k' }, { "http-tunnel", OPT_OPTIONAL, 8 },
	{ "max-sessions", OPT_REQUIRED, 10 }, { "max-conns", OPT_REQUIRED, 4 },
	{ "user", OPT_REQUIRED, 5 }, { "verbose", OPT_NONE, 'v' },
	{ "version", OPT_NONE, 'V' }, { "help", OPT_NONE, 'h' }, { 0, 0, 0 },
};

static const char *const cases[][8] = {
	{ NULL },
	{ "-v", NULL }, { "-vV", NULL }, { "-vh", "-V", NULL },
	{ "-l", "1.2.3.4:80", NULL }, { "-l1.2.3.4:80", NULL }, { "-vl80", "-a", "f", NULL },
	{ "-l", NULL }, { "-vl", NULL }, { "-l", "-v", NULL }, { "-Z", NULL }, { "-vZ", NULL },
	{ "--listen", "80", NULL }, { "--listen=80", NULL }, { "--listen=", NULL },
	{ "--lis", "80", NULL }, { "--lis=80", "--ve", NULL }, { "--l", "80", NULL },
	{ "--u", "x", NULL }, { "--us", "x", NULL }, { "--user", "x", NULL }, { "--users", "x", NULL },
	{ "--v", NULL }, { "--ver", NULL }, { "--verb", NULL }, { "--max", "3", NULL },
	{ "--max-c", "3", NULL }, { "--listen", NULL }, { "--bogus", NULL }, { "--bogus=1", NULL },
	{ "--verbose=1", NULL }, { "--help=", NULL }, { "--http-tunnel", NULL },
	{ "--http-tunnel=/t", NULL }, { "--http-tunnel", "/t", NULL }, { "--http-tunnel=", NULL },
	{ "--=x", NULL }, { "extra", NULL }, { "extra", "-v", NULL }, { "-v", "extra", "-V", NULL },
	{ "a", "b", "--bogus", NULL }, { "a", "--", "-v", NULL }, { "--", "-v", NULL },
	{ "-v", "--", NULL }, { "--", NULL }, { "-", NULL }, { "-v", "-", "x", NULL },
	{ "--hash-password", "x", NULL }, { "-a", "--", "-v", NULL }, { "-l", "", "x", NULL },
	{ "--acl", "--verbose", NULL }, { "-Zv", NULL },
};

/* A value for the messages, never a null %s. */
static const char *str(const char *s)
{
	return s ? s : "(none)";
}

/* One vector through both readers, a copy each (getopt_long() permutes). */
static void same(const char *const *args)
{
	char *a1[10], *a2[10];
	int argc = 1;
	struct opt_state s = { 0 };

	a1[0] = a2[0] = (char *)"tunneld";
	for (; args[argc - 1] && argc < 9; argc++)
		a1[argc] = a2[argc] = (char *)args[argc - 1];
	a1[argc] = a2[argc] = NULL;
	s.argc = argc;
	s.argv = a2;
	s.i = 1;
	optind = 0;
	opterr = 0;
	for (int step = 0; step < 20; step++) {
		int g = getopt_long(argc, a1, ":" SHORTS, glibc_longs, NULL);
		int o = opt_next(&s, SHORTS, our_longs);
		const char *gop = g == -1 && optind < argc ? a1[optind] : NULL;

		CHECK(g == o, "%s...: step %d: %d, getopt_long %d", str(args[0]), step, o, g);
		if (g != o)
			return;
		if (g == -1) {
			CHECK(!gop == !s.operand && (!gop || !strcmp(gop, s.operand)),
			      "%s...: operand '%s', getopt_long '%s'", str(args[0]), str(s.operand), str(gop));
			return;
		}
		if (g == '?' || g == ':') {
			/* In mid-cluster glibc's optind has not moved on yet:
			 * argv[optind - 1] is the element before (tunneld printed
			 * that); musl's, after a short option's missing value, is
			 * past the end (it printed "(null)"). */
			if (!(s.cluster && *s.cluster) && a1[optind - 1])
				CHECK(!strcmp(a1[optind - 1], s.elem), "%s...: names '%s', getopt_long '%s'",
				      str(args[0]), s.elem, a1[optind - 1]);
			return;
		}
		CHECK(!optarg == !s.arg && (!optarg || !strcmp(optarg, s.arg)),
		      "%s...: step %d: value '%s', getopt_long '%s'", str(args[0]), step, str(s.arg),
		      str(optarg));
	}
	CHECK(0, "%s...: no end", str(args[0]));
}

int main(void)
{
	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
		same(cases[k]);
	return tally("test_opt");
}
