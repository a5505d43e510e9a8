/* The command-line reader (opt.h). */
#include <string.h>

#include "opt.h"

/* "--name", "--name=VALUE" or a unique prefix of a name: its val. */
static int long_opt(struct opt_state *s, const struct opt_long *l)
{
	const char *name = s->elem + 2, *eq = strchr(name, '=');
	size_t n = eq ? (size_t)(eq - name) : strlen(name);
	const struct opt_long *hit = NULL;
	int hits = 0;

	for (; l->name && hits >= 0; l++) {
		if (strncmp(l->name, name, n))
			continue;
		hit = l;
		hits = l->name[n] ? hits + 1 : -1;  /* -1: the whole name, no more looking */
	}
	if (hits != 1 && hits != -1)
		return '?';
	if (eq) {
		if (hit->has_arg == OPT_NONE)
			return '?';
		s->arg = eq + 1;
	} else if (hit->has_arg == OPT_REQUIRED) {
		if (s->i >= s->argc)
			return ':';
		s->arg = s->argv[s->i++];
	}
	return hit->val;
}

int opt_next(struct opt_state *s, const char *shorts, const struct opt_long *longs)
{
	const char *p;
	char c;

	s->arg = NULL;
	if (!s->cluster || !*s->cluster) {
		/* Operands are passed over (the first one kept): each pass moves on. */
		for (;; s->i++) {
			if (s->i >= s->argc)
				return -1;
			if (!strcmp(s->argv[s->i], "--")) {
				if (!s->operand && s->i + 1 < s->argc)
					s->operand = s->argv[s->i + 1];
				s->i = s->argc;
				return -1;
			}
			if (s->argv[s->i][0] == '-' && s->argv[s->i][1])
				break;
			if (!s->operand)
				s->operand = s->argv[s->i];
		}
		s->elem = s->argv[s->i++];
		if (s->elem[1] == '-')
			return long_opt(s, longs);
		s->cluster = s->elem + 1;
	}
	c = *s->cluster++;
	p = c != ':' ? strchr(shorts, c) : NULL;
	if (!p)
		return '?';
	if (p[1] == ':') {
		if (*s->cluster)
			s->arg = s->cluster;
		else if (s->i < s->argc)
			s->arg = s->argv[s->i++];
		else
			c = ':';
		s->cluster = NULL;
	}
	return c;
}
