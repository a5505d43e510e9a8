#ifndef VERSION_H
#define VERSION_H
/* The release, shared by tunneld and tunnel (and openwrt/Makefile's PKG_VERSION). */
#define VERSION "0.1.0"
#endif
