#ifndef OPT_H
#define OPT_H

/* The command line, as getopt_long() reads it but without the C library's
 * (5 KiB of a small static build with the stdio it prints through): short
 * options alone or clustered (-vV, -lADDR, -l ADDR), long ones whole or
 * abbreviated to a unique prefix (--listen ADDR, --listen=ADDR, --lis=ADDR),
 * options and operands in any order, "--" ending the options. */
enum { OPT_NONE, OPT_REQUIRED, OPT_OPTIONAL };  /* OPT_OPTIONAL: --name=VALUE only */

struct opt_long {
	const char *name;
	int has_arg, val;
};

struct opt_state {
	int argc, i;
	char **argv;
	const char *cluster;  /* the rest of a cluster of short options */
	const char *arg;      /* the option's argument, NULL when it has none */
	const char *elem;     /* the argument vector's element being read */
	const char *operand;  /* the first operand, when there is one */
};

/* The next option's val (a short one's letter); '?' for an unknown or
 * ambiguous one or a value it does not take, ':' for a missing value (elem
 * names it in both cases); -1 after the last, operand then the first
 * operand (NULL: none). shorts lists the letters, ':' after those that
 * take a value. */
int opt_next(struct opt_state *s, const char *shorts, const struct opt_long *longs);

#endif
