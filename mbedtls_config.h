/*
 * tunneld's mbedTLS 3.6 configuration: TLS 1.3 and 1.2, client and server,
 * ECDHE with AEAD ciphers, X.509 with ECDSA and RSA, and nothing else.
 *
 * It replaces mbedTLS's own include/mbedtls/mbedtls_config.h whole: every
 * file that includes an mbedTLS header, the library's and ours, is compiled
 * with the same (see MBEDTLS_CFLAGS in mbedtls.mk)
 *
 *     -I<top of the tree> -DMBEDTLS_CONFIG_FILE='<mbedtls_config.h>'
 *
 * The angle brackets matter: build_info.h does `#include MBEDTLS_CONFIG_FILE`
 * from include/mbedtls/, and a quoted "mbedtls_config.h" is looked up there
 * first, where mbedTLS's default (everything on) config sits.
 *
 * Options not named here are off. The PSA crypto side (PSA_WANT_*) is not
 * configured separately (no MBEDTLS_PSA_CRYPTO_CONFIG): mbedTLS derives it
 * from the legacy options below (config_adjust_psa_from_legacy.h), so each
 * algorithm is named once. Impossible combinations stop the build in
 * mbedtls/check_config.h.
 *
 * Outside the library, code can test TUNNELD_MBEDTLS_CONFIG to be sure this
 * file, and not the default one, is in effect.
 */
#ifndef TUNNELD_MBEDTLS_CONFIG
#define TUNNELD_MBEDTLS_CONFIG 1

/* Checked by build_info.h against the library: written for 3.6. */
#define MBEDTLS_CONFIG_VERSION 0x03060000

/* ---- System -------------------------------------------------------- */

/* Inline assembly for bignum multiplication (x86-64, arm, aarch64, mips):
 * RSA and ECC arithmetic, several times faster than portable C. */
#define MBEDTLS_HAVE_ASM

/* time() and gmtime_r(): X.509 validity periods are checked against the
 * clock. Without these every certificate's dates would be ignored. */
#define MBEDTLS_HAVE_TIME
#define MBEDTLS_HAVE_TIME_DATE

/* mbedtls_x509_crt_parse_file() and mbedtls_pk_parse_keyfile(): the
 * certificate, key and CA bundle come from files named in the config. */
#define MBEDTLS_FS_IO

/* Functions deprecated in 3.x are not even declared: code written now
 * uses only the current 3.6 API. */
#define MBEDTLS_DEPRECATED_REMOVED

/* ---- Randomness ----------------------------------------------------
 * CTR_DRBG (AES-256) seeded by the entropy collector, whose one source is
 * getrandom(2). mbedTLS reaches getrandom by itself only under glibc; under
 * musl it would read /dev/random through stdio, which a chroot may lack.
 * So the platform source is off and the "hardware" source is on: its
 * function, mbedtls_hardware_poll(), is defined at the end of this file
 * and compiled once into libmbedcrypto.a (mbedtls.mk builds it with
 * -DTUNNELD_MBEDTLS_ENTROPY_IMPL). PSA crypto seeds its own CTR_DRBG from
 * the same collector. */
#define MBEDTLS_ENTROPY_C
#define MBEDTLS_NO_PLATFORM_ENTROPY
#define MBEDTLS_ENTROPY_HARDWARE_ALT
#define MBEDTLS_CTR_DRBG_C

/* ---- PSA crypto ----------------------------------------------------
 * TLS 1.3 in 3.6 does its key exchange and key schedule (HKDF) through
 * the PSA API only: call psa_crypto_init() before the first handshake.
 * MBEDTLS_USE_PSA_CRYPTO stays off: TLS 1.2, X.509 and PK keep the
 * classic code paths (12 KB smaller here). No key storage
 * (MBEDTLS_PSA_CRYPTO_STORAGE_C): keys live in memory, in
 * MBEDTLS_PSA_KEY_SLOT_COUNT (32) static slots, plenty for the one or two
 * TLS sessions a forked connection handler has. */
#define MBEDTLS_PSA_CRYPTO_C

/* ---- Hashes --------------------------------------------------------
 * SHA-256 and SHA-384 are the TLS 1.3 suites' hashes (and TLS 1.2's PRF
 * for the suites below); also what certificates are signed with.
 * SHA-1 and SHA-512 only so that a CA bundle loads whole: a certificate
 * whose signature algorithm is unknown fails to parse, and 30 of Debian's
 * 144 roots (DigiCert Global Root CA, GlobalSign Root CA, ...) are
 * self-signed with SHA-1, 2 with SHA-512. A root's self-signature is never
 * checked, and mbedTLS's default X.509 profile and TLS signature lists
 * still refuse SHA-1 in a chain or a handshake. SHA-512 shares sha512.c
 * with SHA-384, so it costs next to nothing.
 * MD_C is the generic digest layer X.509, PK and HMAC go through; HKDF
 * (with it PSA's HKDF, required by TLS 1.3) is built on HMAC. */
#define MBEDTLS_MD_C
#define MBEDTLS_SHA1_C
#define MBEDTLS_SHA256_C
#define MBEDTLS_SHA384_C
#define MBEDTLS_SHA512_C
#define MBEDTLS_HKDF_C

/* ---- Ciphers -------------------------------------------------------
 * AES-128/256-GCM and ChaCha20-Poly1305: the AEADs of every TLS 1.3 suite
 * and of the TLS 1.2 ECDHE suites kept. No CBC, no CCM. CIPHER_C is the
 * generic layer the TLS record code uses. AESNI_C (x86-64) and AESCE_C
 * (aarch64) switch to the CPU's AES instructions when present and compile
 * to nothing on other targets. AES decryption is never used by GCM or
 * CTR_DRBG, so it is left out. */
#define MBEDTLS_CIPHER_C
#define MBEDTLS_AES_C
#define MBEDTLS_AESNI_C
#define MBEDTLS_AESCE_C
#define MBEDTLS_BLOCK_CIPHER_NO_DECRYPT
#define MBEDTLS_GCM_C
#define MBEDTLS_CHACHA20_C
#define MBEDTLS_POLY1305_C
#define MBEDTLS_CHACHAPOLY_C

/* ---- Public keys ---------------------------------------------------
 * Bignum, ASN.1 and OIDs underlie both key types.
 * ECC: P-256 for ECDSA keys and the secp256r1 group, Curve25519 for the
 * x25519 group (preferred by every current client). P-384 only so the
 * client can verify real chains: many CAs' intermediates and roots
 * (Let's Encrypt's E5 and E6, ISRG Root X2) are P-384 keys, so a
 * P-256 leaf carries a P-384 signature; it also becomes an offered group.
 * ECP_NIST_OPTIM: fast reduction modulo the NIST primes.
 * ECDH_C: TLS 1.2's ECDHE (TLS 1.3 uses PSA's ECDH, derived from it).
 * RSA: PKCS#1 v1.5 signatures (TLS 1.2, most certificates) and PSS
 * (what TLS 1.3 signs with RSA keys, and some certificates use). */
#define MBEDTLS_BIGNUM_C
#define MBEDTLS_ASN1_PARSE_C
#define MBEDTLS_ASN1_WRITE_C
#define MBEDTLS_OID_C
#define MBEDTLS_ECP_C
#define MBEDTLS_ECP_DP_SECP256R1_ENABLED
#define MBEDTLS_ECP_DP_SECP384R1_ENABLED
#define MBEDTLS_ECP_DP_CURVE25519_ENABLED
#define MBEDTLS_ECP_NIST_OPTIM
#define MBEDTLS_ECDH_C
#define MBEDTLS_ECDSA_C
#define MBEDTLS_RSA_C
#define MBEDTLS_PKCS1_V15
#define MBEDTLS_PKCS1_V21

/* PK: one interface over RSA and EC keys; parsing of DER and PEM keys
 * (PKCS#1, SEC1, PKCS#8; not encrypted ones: no PKCS5/PKCS12). */
#define MBEDTLS_PK_C
#define MBEDTLS_PK_PARSE_C

/* ---- X.509 ---------------------------------------------------------
 * Certificate parsing and chain verification (server chain, client's CA
 * bundle), PEM wrapping and its base64. RSASSA-PSS signed certificates
 * too. No CRLs, CSRs or certificate writing. */
#define MBEDTLS_X509_USE_C
#define MBEDTLS_X509_CRT_PARSE_C
#define MBEDTLS_X509_RSASSA_PSS_SUPPORT
#define MBEDTLS_PEM_PARSE_C
#define MBEDTLS_BASE64_C

/* ---- TLS -----------------------------------------------------------
 * Both ends: tunneld is a TLS server, the tunnel client a TLS client. */
#define MBEDTLS_SSL_TLS_C
#define MBEDTLS_SSL_SRV_C
#define MBEDTLS_SSL_CLI_C

/* TLS 1.2 with ECDHE only, signed by ECDSA or RSA certificates: forward
 * secrecy, and what every client since ~2013 offers. No static RSA, no
 * DHE, no PSK. Extended master secret (RFC 7627) closes the triple
 * handshake attack on 1.2. */
#define MBEDTLS_SSL_PROTO_TLS1_2
#define MBEDTLS_KEY_EXCHANGE_ECDHE_ECDSA_ENABLED
#define MBEDTLS_KEY_EXCHANGE_ECDHE_RSA_ENABLED
#define MBEDTLS_SSL_EXTENDED_MASTER_SECRET

/* TLS 1.3 with certificates and (EC)DHE. The library requires the peer's
 * certificate to be kept for 1.3. Compatibility mode (dummy
 * ChangeCipherSpec, legacy session id) gets through middleboxes. */
#define MBEDTLS_SSL_PROTO_TLS1_3
#define MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_EPHEMERAL_ENABLED
#define MBEDTLS_SSL_TLS1_3_COMPATIBILITY_MODE
#define MBEDTLS_SSL_KEEP_PEER_CERTIFICATE

/* Session tickets (tunneld --ticket-key, Kconfig TLS_TICKETS): a server
 * seals the session's state under a key every tunneld process of the
 * service reads from one file, so the next connection, served by another
 * process, resumes without the certificate and signature. TLS 1.2's RFC
 * 5077 tickets, and TLS 1.3's resumption PSKs in psk_dhe_ke mode only
 * (PSK_EPHEMERAL): each resumed session still does an (EC)DHE exchange, so
 * a ticket key that leaks later does not open a recorded TLS 1.3 session.
 * Pure psk_ke (MODE_PSK) stays off for that reason. TICKET_C is the
 * library's AES-256-GCM ticket sealer, which tls.c gives its keys. Without
 * --ticket-key no ticket callback is set: no ticket is sent, none is read.
 * A build with CONFIG_TLS_TICKETS=n compiles all of it out of the library
 * too: the Makefile then adds -DTUNNELD_TLS_TICKETS=0 to every compile
 * that sees this file (the library's, tls.c's), and the library is rebuilt
 * (its objects follow their compile command). */
#if !defined(TUNNELD_TLS_TICKETS) || TUNNELD_TLS_TICKETS
#define MBEDTLS_SSL_SESSION_TICKETS
#define MBEDTLS_SSL_TICKET_C
#define MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_PSK_EPHEMERAL_ENABLED
#endif

/* SNI: the server picks its certificate by name, the client sends the name
 * it verifies (mbedtls_ssl_set_hostname). */
#define MBEDTLS_SSL_SERVER_NAME_INDICATION

/* Send an alert for each failure, so the peer (and its log) learns why
 * instead of seeing the connection just close. */
#define MBEDTLS_SSL_ALL_ALERT_MESSAGES

/* mbedtls_strerror() exists but gives only the number ("UNKNOWN ERROR
 * CODE (xxxx)"): the full table (ERROR_C) costs more than it tells in a
 * log that prints the code in hex anyway. */
#define MBEDTLS_ERROR_STRERROR_DUMMY

/* Not here, on purpose: renegotiation, DTLS, a session cache (useless
 * with one process per connection), early data (0-RTT: replayable),
 * ALPN, max fragment length, context serialisation, debug output
 * (DEBUG_C), self tests, net_sockets (tunneld has its own), PSA key
 * storage, threading (tunneld forks per connection). */

#endif /* TUNNELD_MBEDTLS_CONFIG */

/*
 * The entropy source. Compiled once, by mbedtls.mk, as a C file:
 *     $(CC) -x c -DTUNNELD_MBEDTLS_ENTROPY_IMPL -c mbedtls_config.h
 * Invisible everywhere else.
 */
#if defined(TUNNELD_MBEDTLS_ENTROPY_IMPL) && !defined(TUNNELD_MBEDTLS_ENTROPY_DONE)
#define TUNNELD_MBEDTLS_ENTROPY_DONE 1

#include <errno.h>
#include <stddef.h>
#include <sys/random.h> /* glibc >= 2.25, musl >= 1.1.20 */

#include <mbedtls/entropy.h>

/* Declared in the library's private entropy_poll.h. */
int mbedtls_hardware_poll(void *data, unsigned char *output, size_t len,
                          size_t *olen);

/* Fills output from the kernel's CSPRNG. Blocks only until the kernel's
 * pool is first initialised after boot, never afterwards. */
int mbedtls_hardware_poll(void *data, unsigned char *output, size_t len,
                          size_t *olen)
{
    size_t done = 0;

    (void) data;
    while (done < len) {
        ssize_t n = getrandom(output + done, len - done, 0);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            *olen = done;
            return MBEDTLS_ERR_ENTROPY_SOURCE_FAILED;
        }
        done += (size_t) n;
    }
    *olen = done;
    return 0;
}
#endif /* TUNNELD_MBEDTLS_ENTROPY_IMPL */
