// proxy.pac: a proxy auto-config file sending browsers through tunneld at
// router.lan:3128. Serve it as application/x-ns-proxy-autoconfig and name
// its URL in the browser (Firefox: Settings, Network, Automatic proxy
// configuration URL; Chromium: --proxy-pac-url=URL) or hand it out by WPAD.
//
// tunneld makes tunnels (CONNECT) only: a browser sends https:// and wss://
// pages through it as CONNECT, but a plain http:// page as "GET http://...",
// which tunneld refuses (405), so http:// goes DIRECT below.
//
// Browsers keep loopback away from a proxy: Chromium does not even ask this
// file about localhost and 127.0.0.0/8 (--proxy-bypass-list="<-loopback>"
// changes that), and Firefox proxies loopback only with
// network.proxy.allow_hijacking_localhost set to true in about:config.
// elinks reads no PAC file: see elinks.conf.
//
// "HTTPS router.lan:3129" instead of "PROXY router.lan:3128" speaks TLS to
// a tunneld with --cert and --key (Firefox and Chromium). Ending the answer
// with "; DIRECT" would go direct whenever tunneld is down.
function FindProxyForURL(url, host) {
    if (isPlainHostName(host) || dnsDomainIs(host, ".lan") ||
        shExpMatch(host, "10.*") || shExpMatch(host, "192.168.*"))
        return "DIRECT";
    if (url.substring(0, 5) == "http:" || url.substring(0, 3) == "ws:")
        return "DIRECT";
    return "PROXY router.lan:3128";
}
