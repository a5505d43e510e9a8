#ifndef SNI_H
#define SNI_H
#include <stddef.h>

/* Look at the first bytes a client sent through the tunnel. Returns -1 if
 * they are not a TLS handshake record, 0 if more bytes are needed to tell,
 * 1 for a ClientHello: sni then holds its host_name ("" when it has none,
 * the name is not a plain host name, or the hello spans several records). */
int tls_hello_sni(const unsigned char *buf, size_t len, char *sni, size_t max);

#endif
