/* TLS 1.3/1.2 with mbedTLS 3.6: toward tunneld's clients (the server side),
 * and from tunnel to an https:// SERVER (the client side). One connection
 * per process either way, so the session lives here. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
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
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>
#include <mbedtls/psa_util.h>
#include <psa/crypto.h>

#include "net.h"
#include "relay.h"
#include "tls.h"

/* The project's mbedtls_config.h, or a system library by choice: not the
 * library's full default config by accident (a quoted config name). */
#if !defined(TUNNELD_MBEDTLS_CONFIG) && !defined(TUNNELD_SYSTEM_MBEDTLS)
#error "mbedTLS must be built with the project's mbedtls_config.h (or SYSTEM_MBEDTLS=1)"
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

int tls_server_init(const char *cert, const char *keyfile, char *err, size_t errlen)
{
	int r;

	if (crypto_start(err, errlen) < 0)
		return -1;
	mbedtls_x509_crt_init(&chain);
	mbedtls_pk_init(&key);
	mbedtls_ssl_config_init(&conf);
	if ((r = mbedtls_x509_crt_parse_file(&chain, cert)) != 0) {
		snprintf(err, errlen, "%s: not a readable PEM certificate chain (-0x%04x)", cert, -r);
		return -1;
	}
	r = mbedtls_pk_parse_keyfile(&key, keyfile, NULL, mbedtls_psa_get_random,
				     MBEDTLS_PSA_RANDOM_STATE);
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
	if (mbedtls_pk_check_pair(&chain.pk, &key, mbedtls_psa_get_random,
				  MBEDTLS_PSA_RANDOM_STATE)) {
		snprintf(err, errlen, "%s: the key does not belong to the certificate in %s",
			 keyfile, cert);
		return -1;
	}
	mbedtls_ssl_conf_rng(&conf, mbedtls_psa_get_random, MBEDTLS_PSA_RANDOM_STATE);
	mbedtls_ssl_conf_min_tls_version(&conf, MBEDTLS_SSL_VERSION_TLS1_2);
	return 0;
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

	mbedtls_ssl_init(&ssl);
	if (crypto_start(NULL, 0) < 0 || mbedtls_ssl_setup(&ssl, &conf)) {
		*why = "tls-setup";
		return -1;
	}
	mbedtls_ssl_set_bio(&ssl, &sbio, bio_send, bio_recv, NULL);
	while ((r = mbedtls_ssl_handshake(&ssl)) != 0) {
		if (r != MBEDTLS_ERR_SSL_WANT_READ && r != MBEDTLS_ERR_SSL_WANT_WRITE) {
			*why = "tls-handshake";
			return -1;
		}
		if (wait_io(&sbio, r, deadline) < 0) {
			*why = "tls-handshake-timeout";
			return -1;
		}
	}
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
	int r;

	if (crypto_start(err, errlen) < 0)
		return -1;
	mbedtls_x509_crt_init(&ca);
	mbedtls_ssl_config_init(&cconf);
	/* A positive count: certificates this build cannot read (a system
	 * bundle has curves and algorithms the minimal config leaves out);
	 * the others are trusted. */
	if ((r = mbedtls_x509_crt_parse_file(&ca, cafile)) < 0) {
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
