/* TLS 1.3/1.2 with mbedTLS 3.6: toward tunneld's clients (the server side),
 * and from tunnel to an https:// SERVER (the client side). One connection
 * per process either way, so the session lives here. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* First, so that an older library stops the build here, not in a header. */
#include <mbedtls/version.h>
/* Before 3.6 the TLS 1.3 and PSA calls below do not exist; 3.6.0 to 3.6.5
 * have no call that reseeds PSA's random generator (psa_random_reseed),
 * and do not reseed it after fork() by themselves (CVE-2026-25835). */
#if !defined(MBEDTLS_VERSION_NUMBER) || MBEDTLS_VERSION_NUMBER < 0x03060600
#pragma message "found mbedTLS " MBEDTLS_VERSION_STRING
#error "tunneld needs mbedTLS 3.6.6 or newer (3.6: TLS 1.3 and PSA; 3.6.6: a reseed after fork)"
#endif

#include <mbedtls/net_sockets.h>  /* the error codes only: NET_C is off */
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha256.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ticket.h>
#include <mbedtls/x509_crt.h>
#include <mbedtls/psa_util.h>
#include <psa/crypto.h>

#include "file.h"
#include "fmt.h"
#include "net.h"
#include "relay.h"
#include "tls.h"

/* The project's mbedtls_config.h, or a system library by choice: not the
 * library's full default config by accident (a quoted config name). */
#if !defined(TUNNELD_MBEDTLS_CONFIG) && !defined(TUNNELD_SYSTEM_MBEDTLS)
#error "mbedTLS must be built with the project's mbedtls_config.h (or SYSTEM_MBEDTLS=1)"
#endif
/* A system library may leave tickets out: then tunneld without them. */
#if CONFIG_TLS_TICKETS && (!defined(MBEDTLS_SSL_TICKET_C) || !defined(MBEDTLS_SSL_SESSION_TICKETS))
#error "this mbedTLS has no session tickets (SSL_TICKET_C): build with CONFIG_TLS_TICKETS=n"
#endif

static mbedtls_ssl_config conf;
static mbedtls_x509_crt chain;
static mbedtls_pk_context key;
static mbedtls_ssl_context ssl;
static mbedtls_ssl_config cconf;   /* the client side's */
static mbedtls_x509_crt ca;
/* tunneld's own client side, toward an https:// upstream proxy: a second
 * session beside the client's, so both can be TLS at once. */
static mbedtls_ssl_context ussl;

/* The process whose psa_crypto_init() seeded PSA's random generator. A
 * process forked from it (a --listen worker, each of tunnel's) starts with
 * a copy of that state, and two handshakes would then share their
 * "random" numbers: randoms, ECDHE key shares, signature nonces. Each
 * process reseeds it from fresh entropy before its first handshake.
 * mbedTLS 3.6.6 also reseeds by itself when it notices the new pid (where it
 * knows the platform as Unix-like); this does not depend on that. */
static pid_t seeded_pid;

/* Start the crypto library, or reseed it in a forked process. 0, or -1
 * with a message in err. */
static int crypto_start(char *err, size_t errlen)
{
	pid_t pid = getpid();
	psa_status_t st;

	if (psa_crypto_init() != PSA_SUCCESS)
		goto fail;
	if (!seeded_pid)
		seeded_pid = pid;
	if (seeded_pid == pid)
		return 0;
	/* The pid as personalisation, as the library's own documentation
	 * asks of a forked process; the entropy is getrandom()'s.
	 * NOT_SUPPORTED: an external generator, which has no state here. */
	st = psa_random_reseed((const uint8_t *)&pid, sizeof pid);
	if (st == PSA_SUCCESS || st == PSA_ERROR_NOT_SUPPORTED) {
		seeded_pid = pid;
		return 0;
	}
fail:
	if (errlen)
		snprintf(err, errlen, "TLS: the crypto library did not start");
	return -1;
}

/* The sockets a session's bio callbacks use: for the client's session fd 0
 * reads and fd 1 writes, as inetd hands them to the server; tls_connect()
 * sets both to its socket. */
struct bio {
	int in, out;
};
static struct bio sbio = { 0, 1 }, ubio = { -1, -1 };

static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
	ssize_t n = send(((struct bio *)ctx)->out, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);

	if (n >= 0)
		return (int)n;
	return errno == EAGAIN || errno == EINTR ? MBEDTLS_ERR_SSL_WANT_WRITE
						 : MBEDTLS_ERR_NET_SEND_FAILED;
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
	ssize_t n = recv(((struct bio *)ctx)->in, buf, len, MSG_DONTWAIT);

	if (n >= 0)
		return (int)n;
	return errno == EAGAIN || errno == EINTR ? MBEDTLS_ERR_SSL_WANT_READ
						 : MBEDTLS_ERR_NET_RECV_FAILED;
}

/* PEM files are read as text through file_read (a spare of tunneld
 * --listen finds them in its listener's snapshot): into pem, its length
 * with the NUL, as mbedTLS's parsers take it, or 0 with err set. A system
 * CA bundle is some 200 KB. */
static char pem[512 * 1024];

static size_t read_pem(const char *path, char *err, size_t errlen)
{
	ssize_t n = file_read(path, 0, pem, sizeof pem, err, errlen);

	return n < 0 ? 0 : (size_t)n + 1;
}

/* 1: the pair is checked when a client finds the signature bad. */
static int check_on_mistrust;

int tls_server_init(const char *cert, const char *keyfile, enum tls_pair pair, char *err,
		    size_t errlen)
{
	size_t n;
	int r;

	if (crypto_start(err, errlen) < 0)
		return -1;
	mbedtls_x509_crt_init(&chain);
	mbedtls_pk_init(&key);
	mbedtls_ssl_config_init(&conf);
	if (!(n = read_pem(cert, err, errlen)))
		return -1;
	if ((r = mbedtls_x509_crt_parse(&chain, (const unsigned char *)pem, n)) != 0) {
		snprintf(err, errlen, "%s: not a readable PEM certificate chain (-0x%04x)", cert, -r);
		return -1;
	}
	if (!(n = read_pem(keyfile, err, errlen)))
		return -1;
	r = mbedtls_pk_parse_key(&key, (const unsigned char *)pem, n, NULL, 0,
				 mbedtls_psa_get_random, MBEDTLS_PSA_RANDOM_STATE);
	mbedtls_platform_zeroize(pem, n);
	if (r) {
		snprintf(err, errlen, "%s: not a readable, unencrypted PEM private key (-0x%04x)",
			 keyfile, -r);
		return -1;
	}
	if (mbedtls_ssl_config_defaults(&conf, MBEDTLS_SSL_IS_SERVER, MBEDTLS_SSL_TRANSPORT_STREAM,
					MBEDTLS_SSL_PRESET_DEFAULT) ||
	    (r = mbedtls_ssl_conf_own_cert(&conf, &chain, &key))) {
		snprintf(err, errlen, "%s, %s: the key does not fit the certificate", cert, keyfile);
		return -1;
	}
	/* The pair's check costs a private-key operation: once, where the
	 * files are read from disk, not in every spare after; in inetd mode,
	 * where every connection reads them, only once a client finds the
	 * signature bad, which a key of another certificate makes (the check
	 * then adds a sixth to what that full handshake cost). A key of
	 * another kind or size is refused here in every mode. */
	if ((pair == TLS_PAIR_CHECK && mbedtls_pk_check_pair(&chain.pk, &key, mbedtls_psa_get_random,
							     MBEDTLS_PSA_RANDOM_STATE)) ||
	    !mbedtls_pk_can_do(&key, mbedtls_pk_get_type(&chain.pk)) ||
	    mbedtls_pk_get_bitlen(&key) != mbedtls_pk_get_bitlen(&chain.pk)) {
		snprintf(err, errlen, "%s: the key does not belong to the certificate in %s",
			 keyfile, cert);
		return -1;
	}
	check_on_mistrust = pair == TLS_PAIR_ON_MISTRUST;
	mbedtls_ssl_conf_rng(&conf, mbedtls_psa_get_random, MBEDTLS_PSA_RANDOM_STATE);
	mbedtls_ssl_conf_min_tls_version(&conf, MBEDTLS_SSL_VERSION_TLS1_2);
	return 0;
}

/* Session tickets (--ticket-key). The file's keys, read by tls_tickets_load
 * (in inetd mode at each start, with --listen by the listener, again when
 * the file changes) and handed to mbedTLS's ticket sealer in each
 * connection's own process, where the clock that ages a key starts anew:
 * one sealer per key, the first seals, all of them open. A ticket begins
 * with its key's 4-byte name, a hash of the key, the same in every
 * process; an unknown name, a bad seal or an age past the lifetime is a
 * full handshake, never a refusal. */
#define TICKET_KEYS 8
#define TICKET_KEY_LEN 32

static struct {
	int n;                                 /* keys; 0: no tickets */
	unsigned lifetime;                     /* seconds */
	unsigned char key[TICKET_KEYS][TICKET_KEY_LEN];
	unsigned char name[TICKET_KEYS][4];
	const char *path;
	struct stat st;                        /* the file they came from */
	int gone;                              /* the file was missing */
} tk;
static mbedtls_ssl_ticket_context sealer[TICKET_KEYS];
static int resumed;

static int hexval(int ch)
{
	return ch >= '0' && ch <= '9' ? ch - '0'
	       : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
	       : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
}

/* One line of the file: 64 hex digits, spaces or tabs around them. */
static int key_line(const char *s, unsigned char *out)
{
	size_t i;

	while (*s == ' ' || *s == '\t')
		s++;
	for (i = 0; i < 2 * TICKET_KEY_LEN; i++) {
		int h = hexval(s[i]);

		if (h < 0)
			return -1;
		out[i / 2] = (unsigned char)(i % 2 ? out[i / 2] << 4 | h : h);
	}
	for (s += i; *s == ' ' || *s == '\t' || *s == '\r'; s++)
		;
	return *s ? -1 : 0;
}

/* The file's keys into tk; 0, or -1 with "FILE[:LINE]: why" in err and tk
 * as it was. */
static int read_keys(const char *path, char *err, size_t errlen)
{
	static char text[2048];
	unsigned char keys[TICKET_KEYS][TICKET_KEY_LEN];
	struct stat st;
	char *rest = text, *l;
	int n = 0, line = 0, r = -1;

	if (file_stat(path, &st) < 0) {
		strfmt(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	/* A FIFO (or a device) would hold the listener in open() or read(). */
	if (!S_ISREG(st.st_mode)) {
		strfmt(err, errlen, "%s: not a regular file", path);
		return -1;
	}
	if (st.st_mode & 077) {
		strfmt(err, errlen, "%s: readable by others than its owner (chmod 600 %s)", path, path);
		return -1;
	}
	file_keep_hold();
	if (file_text(text, sizeof text, path, NULL, 0, err, errlen) < 0)
		goto out;
	while ((l = text_line(&rest))) {
		line++;
		if (!l[strspn(l, " \t\r")] || l[strspn(l, " \t")] == '#')
			continue;
		if (n == TICKET_KEYS) {
			strfmt(err, errlen, "%s:%d: more than %d keys", path, line, TICKET_KEYS);
			goto out;
		}
		if (key_line(l, keys[n]) < 0) {
			strfmt(err, errlen, "%s:%d: not a key: 64 hex digits (openssl rand -hex 32)",
			       path, line);
			goto out;
		}
		n++;
	}
	if (!n) {
		strfmt(err, errlen, "%s: no key in it", path);
		goto out;
	}
	memcpy(tk.key, keys, sizeof keys);
	for (int i = 0; i < n; i++) {
		/* The name says which key, not the key: a hash of it, labelled. */
		unsigned char h[32];
		mbedtls_sha256_context c;

		mbedtls_sha256_init(&c);
		if (mbedtls_sha256_starts(&c, 0) || mbedtls_sha256_update(&c, keys[i], TICKET_KEY_LEN) ||
		    mbedtls_sha256_update(&c, (const unsigned char *)"tunneld ticket", 14) ||
		    mbedtls_sha256_finish(&c, h)) {
			strfmt(err, errlen, "%s: SHA-256 failed", path);
			goto out;
		}
		mbedtls_sha256_free(&c);
		memcpy(tk.name[i], h, 4);
	}
	tk.n = n;
	tk.path = path;
	tk.st = st;
	r = 0;
out:
	file_keep_release(r == 0);
	mbedtls_platform_zeroize(text, sizeof text);
	mbedtls_platform_zeroize(keys, sizeof keys);
	return r;
}

int tls_tickets_load(const char *path, unsigned lifetime, char *err, size_t errlen)
{
	if (!CONFIG_TLS_TICKETS) {
		strfmt(err, errlen, "%s: this tunneld was built without tickets", path);
		return -1;
	}
	tk.lifetime = lifetime;
	return read_keys(path, err, errlen);
}

int tls_tickets_reload(char *err, size_t errlen)
{
	struct stat st;

	if (!CONFIG_TLS_TICKETS || !tk.n)
		return 0;
	/* Each failure is told once per change, not per connection. */
	if (stat(tk.path, &st) < 0) {
		if (tk.gone)
			return 0;
		tk.gone = 1;
		strfmt(err, errlen, "%s: %s", tk.path, strerror(errno));
		return -1;
	}
	tk.gone = 0;
	/* A new file moved into place, this one written again, or its mode
	 * or owner changed (ctime): read, and checked, again. */
	if (st.st_ino == tk.st.st_ino && st.st_dev == tk.st.st_dev && st.st_size == tk.st.st_size &&
	    st.st_mtim.tv_sec == tk.st.st_mtim.tv_sec && st.st_mtim.tv_nsec == tk.st.st_mtim.tv_nsec &&
	    st.st_ctim.tv_sec == tk.st.st_ctim.tv_sec && st.st_ctim.tv_nsec == tk.st.st_ctim.tv_nsec)
		return 0;
	if (read_keys(tk.path, err, errlen) < 0) {
		tk.st = st;
		return -1;
	}
	return 1;
}

static int ticket_write(void *p, const mbedtls_ssl_session *s, unsigned char *start,
			const unsigned char *end, size_t *tlen, uint32_t *lifetime)
{
	(void)p;
	return mbedtls_ssl_ticket_write(&sealer[0], s, start, end, tlen, lifetime);
}

static int ticket_parse(void *p, mbedtls_ssl_session *s, unsigned char *buf, size_t len)
{
	(void)p;
	for (int i = 0; len >= 4 && i < tk.n; i++)
		if (!memcmp(buf, tk.name[i], 4))
			return mbedtls_ssl_ticket_parse(&sealer[i], s, buf, len);
	return MBEDTLS_ERR_SSL_SESSION_TICKET_EXPIRED;
}

/* The sealers of this connection's process, from tk; once. */
static int tickets_start(void)
{
	static int started;

	if (started++)
		return 0;
	for (int i = 0; i < tk.n; i++) {
		mbedtls_ssl_ticket_init(&sealer[i]);
		if (mbedtls_ssl_ticket_setup(&sealer[i], mbedtls_psa_get_random, MBEDTLS_PSA_RANDOM_STATE,
					     MBEDTLS_CIPHER_AES_256_GCM, tk.lifetime) ||
		    mbedtls_ssl_ticket_rotate(&sealer[i], tk.name[i], 4, tk.key[i], TICKET_KEY_LEN,
					      tk.lifetime))
			return -1;
	}
	/* Declared only by a library with tickets; without them (a build with
	 * CONFIG_TLS_TICKETS=n) this function is never called. */
#if defined(MBEDTLS_SSL_SESSION_TICKETS)
	mbedtls_ssl_conf_session_tickets_cb(&conf, ticket_write, ticket_parse, NULL);
	/* Two TLS 1.3 tickets: a browser opens its next tunnels side by side,
	 * and a ticket is best used once (RFC 8446, C.4). */
	mbedtls_ssl_conf_new_session_tickets(&conf, 2);
#else
	(void)ticket_write;
	(void)ticket_parse;
#endif
	return 0;
}

int tls_resumed(void)
{
	return resumed;
}

/* Wait until the socket can do what mbedTLS asked for. */
static int wait_io(const struct bio *b, int want, long long deadline)
{
	return want == MBEDTLS_ERR_SSL_WANT_WRITE ? net_wait(b->out, POLLOUT, deadline)
						   : net_wait(b->in, POLLIN, deadline);
}

int tls_accept(int timeout_ms, const char **why)
{
	long long deadline = now_ms() + timeout_ms;
	int r;

	int full = 0;

	mbedtls_ssl_init(&ssl);
	if (crypto_start(NULL, 0) < 0 || (CONFIG_TLS_TICKETS && tk.n && tickets_start() < 0) ||
	    mbedtls_ssl_setup(&ssl, &conf)) {
		*why = "tls-setup";
		return -1;
	}
	mbedtls_ssl_set_bio(&ssl, &sbio, bio_send, bio_recv, NULL);
	/* Step by step, to see whether the server ever sends its certificate:
	 * a handshake that resumes from a ticket (1.2 or 1.3) does not. */
	while (!mbedtls_ssl_is_handshake_over(&ssl)) {
		if (ssl.MBEDTLS_PRIVATE(state) == MBEDTLS_SSL_SERVER_CERTIFICATE)
			full = 1;
		if ((r = mbedtls_ssl_handshake_step(&ssl)) == 0)
			continue;
		if (r != MBEDTLS_ERR_SSL_WANT_READ && r != MBEDTLS_ERR_SSL_WANT_WRITE) {
			*why = "tls-handshake";
			/* Past the certificate, and not a client that left: a
			 * client answers a signature its certificate's key does
			 * not verify with decrypt_error (RFC 8446 4.4.3), and a
			 * key of another kind fails to sign here. */
			if (full && check_on_mistrust && r != MBEDTLS_ERR_SSL_CONN_EOF &&
			    r != MBEDTLS_ERR_NET_RECV_FAILED && r != MBEDTLS_ERR_NET_SEND_FAILED &&
			    mbedtls_pk_check_pair(&chain.pk, &key, mbedtls_psa_get_random,
						  MBEDTLS_PSA_RANDOM_STATE))
				*why = "tls-key-mismatch";
			return -1;
		}
		if (wait_io(&sbio, r, deadline) < 0) {
			*why = "tls-handshake-timeout";
			return -1;
		}
	}
	resumed = !full;
	return 0;
}

static ssize_t session_read(mbedtls_ssl_context *s, void *buf, size_t len)
{
	int r = mbedtls_ssl_read(s, buf, len);

	if (r >= 0)
		return r;
	if (r == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
		return 0;
	/* A record that carried no data (a TLS 1.3 post-handshake message). */
	errno = r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE ? EAGAIN
		: r == MBEDTLS_ERR_NET_CONN_RESET ? ECONNRESET : EIO;
	return -1;
}

static ssize_t session_write(mbedtls_ssl_context *s, const void *buf, size_t len)
{
	int r = mbedtls_ssl_write(s, buf, len);

	if (r >= 0)
		return r;
	errno = r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE ? EAGAIN : EPIPE;
	return -1;
}

ssize_t tls_read(int fd, void *buf, size_t len)
{
	(void)fd;
	return session_read(&ssl, buf, len);
}

ssize_t tls_write(int fd, const void *buf, size_t len)
{
	(void)fd;
	return session_write(&ssl, buf, len);
}

int tls_pending(void)
{
	return mbedtls_ssl_check_pending(&ssl) != 0;
}

void tls_shutdown(void)
{
	(void)mbedtls_ssl_close_notify(&ssl);
}

const struct relay_io *tls_relay_io(void)
{
	static const struct relay_io io = { tls_read, tls_write, tls_pending, tls_shutdown };

	return &io;
}

int tls_client_init(const char *cafile, char *err, size_t errlen)
{
	size_t n;
	int r;

	if (crypto_start(err, errlen) < 0)
		return -1;
	mbedtls_x509_crt_init(&ca);
	mbedtls_ssl_config_init(&cconf);
	/* A positive count: certificates this build cannot read (a system
	 * bundle has curves and algorithms the minimal config leaves out);
	 * the others are trusted. */
	if (!(n = read_pem(cafile, err, errlen)))
		return -1;
	if ((r = mbedtls_x509_crt_parse(&ca, (const unsigned char *)pem, n)) < 0) {
		snprintf(err, errlen, "%s: not a readable PEM certificate bundle (-0x%04x)", cafile, -r);
		return -1;
	}
	if (mbedtls_ssl_config_defaults(&cconf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
					MBEDTLS_SSL_PRESET_DEFAULT)) {
		snprintf(err, errlen, "TLS: no client configuration");
		return -1;
	}
	/* The chain and the host name are checked; a failure ends the handshake. */
	mbedtls_ssl_conf_authmode(&cconf, MBEDTLS_SSL_VERIFY_REQUIRED);
	mbedtls_ssl_conf_ca_chain(&cconf, &ca, NULL);
	mbedtls_ssl_conf_rng(&cconf, mbedtls_psa_get_random, MBEDTLS_PSA_RANDOM_STATE);
	mbedtls_ssl_conf_min_tls_version(&cconf, MBEDTLS_SSL_VERSION_TLS1_2);
	/* One connection per process: a ticket would never be used again
	 * (the call exists only in a library with tickets). */
#if defined(MBEDTLS_SSL_SESSION_TICKETS)
	mbedtls_ssl_conf_session_tickets(&cconf, MBEDTLS_SSL_SESSION_TICKETS_DISABLED);
#endif
	return 0;
}

/* Why the server's certificate was refused, in words. */
static const char *verify_why(uint32_t flags)
{
	if (flags & MBEDTLS_X509_BADCERT_CN_MISMATCH)
		return "its certificate is not for this host name";
	if (flags & MBEDTLS_X509_BADCERT_EXPIRED)
		return "its certificate has expired";
	if (flags & MBEDTLS_X509_BADCERT_FUTURE)
		return "its certificate is not valid yet";
	if (flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED)
		return "its certificate is not signed by a CA in --cacert";
	return "its certificate did not verify";
}

/* The client side's handshake of session s on fd, bio b. */
static int connect_on(mbedtls_ssl_context *s, struct bio *b, int fd, const char *host,
		      int timeout_ms, char *err, size_t errlen)
{
	long long deadline = now_ms() + timeout_ms;
	int r;

	/* Reseeded in a process forked since the last handshake. */
	if (crypto_start(err, errlen) < 0)
		return -1;
	mbedtls_ssl_free(s);
	mbedtls_ssl_init(s);
	b->in = b->out = fd;
	if (mbedtls_ssl_setup(s, &cconf) || mbedtls_ssl_set_hostname(s, host)) {
		snprintf(err, errlen, "no TLS session (out of memory?)");
		return -1;
	}
	mbedtls_ssl_set_bio(s, b, bio_send, bio_recv, NULL);
	while ((r = mbedtls_ssl_handshake(s)) != 0) {
		if (r == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
			snprintf(err, errlen, "%s", verify_why(mbedtls_ssl_get_verify_result(s)));
			return -1;
		}
		if (r != MBEDTLS_ERR_SSL_WANT_READ && r != MBEDTLS_ERR_SSL_WANT_WRITE) {
			snprintf(err, errlen, "the TLS handshake failed (-0x%04x)", -r);
			return -1;
		}
		if (wait_io(b, r, deadline) < 0) {
			snprintf(err, errlen, "the TLS handshake took too long");
			return -1;
		}
	}
	return 0;
}

int tls_connect(int fd, const char *host, int timeout_ms, char *err, size_t errlen)
{
	return connect_on(&ssl, &sbio, fd, host, timeout_ms, err, errlen);
}

int tls_up_connect(int fd, const char *host, int timeout_ms, char *err, size_t errlen)
{
	return connect_on(&ussl, &ubio, fd, host, timeout_ms, err, errlen);
}

static ssize_t up_read(int fd, void *buf, size_t len)
{
	(void)fd;
	return session_read(&ussl, buf, len);
}

static ssize_t up_write(int fd, const void *buf, size_t len)
{
	(void)fd;
	return session_write(&ussl, buf, len);
}

static int up_pending(void)
{
	return mbedtls_ssl_check_pending(&ussl) != 0;
}

static void up_end(void)
{
	(void)mbedtls_ssl_close_notify(&ussl);
}

const struct relay_io *tls_up_relay_io(void)
{
	static const struct relay_io io = { up_read, up_write, up_pending, up_end };

	return &io;
}

void tls_close(void)
{
	mbedtls_ssl_free(&ssl);
	mbedtls_ssl_init(&ssl);
}
