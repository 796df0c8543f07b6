package ratelimit

import (
	"net/http"
	"net/netip"
	"strings"
)

// maxForwardedHops bounds how far back X-Forwarded-For is walked: no real
// chain of proxies is longer, and a client must not make us parse a header
// full of addresses.
const maxForwardedHops = 32

// ClientAddr returns the address a request came from. It is the direct
// peer, unless that peer is in trusted: then X-Forwarded-For is read from
// the right (the entry the trusted proxy appended), and each entry is
// believed only while the hop that reported it is trusted too. A client
// can therefore put anything it likes in the header, but only the entries
// written by our own proxies are ever taken. An unparsable entry ends the
// walk at the last believed hop. The zero Addr means the peer itself could
// not be parsed (not a TCP connection).
func ClientAddr(r *http.Request, trusted []netip.Prefix) netip.Addr {
	client := parseHop(r.RemoteAddr)
	if !client.IsValid() || !isTrusted(client, trusted) {
		return client
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i, walked := len(hops)-1, 0; i >= 0 && walked < maxForwardedHops && isTrusted(client, trusted); i, walked = i-1, walked+1 {
		hop := parseHop(strings.TrimSpace(hops[i]))
		if !hop.IsValid() {
			break
		}
		client = hop
	}
	return client
}

// parseHop reads "ip" or "ip:port" (IPv6 in brackets with a port),
// dropping any zone and unmapping IPv4-in-IPv6, so one client always
// reads as one address.
func parseHop(s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, perr := netip.ParseAddrPort(s)
		if perr != nil {
			return netip.Addr{}
		}
		a = ap.Addr()
	}
	return a.WithZone("").Unmap()
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// AddressKey is the rate-limit identity of an address: IPv4 addresses one
// by one, IPv6 by /64, since a single subscriber is usually handed a whole
// /64 and could otherwise rotate through it to escape the limit.
func AddressKey(a netip.Addr) string {
	switch {
	case !a.IsValid():
		return "unknown"
	case a.Is6():
		return netip.PrefixFrom(a, 64).Masked().String()
	default:
		return a.String()
	}
}

// ParseTrustedProxies parses CIDRs ("10.0.0.0/8") or single addresses
// ("10.0.0.1", taken as /32 or /128), naming the first bad entry.
func ParseTrustedProxies(entries []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(entries))
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if strings.Contains(e, "/") {
			p, err := netip.ParsePrefix(e)
			if err != nil {
				return nil, &ProxyError{Entry: e, Err: err}
			}
			if p.Addr().Zone() != "" {
				return nil, &ProxyError{Entry: e, Err: errZone}
			}
			out = append(out, netip.PrefixFrom(p.Addr().Unmap(), unmappedBits(p)).Masked())
			continue
		}
		a, err := netip.ParseAddr(e)
		if err != nil {
			return nil, &ProxyError{Entry: e, Err: err}
		}
		if a.Zone() != "" {
			return nil, &ProxyError{Entry: e, Err: errZone}
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// unmappedBits keeps a ::ffff:a.b.c.d/n prefix meaningful once its
// address is unmapped to IPv4 (peers are unmapped the same way).
func unmappedBits(p netip.Prefix) int {
	if p.Addr().Is4In6() {
		return max(p.Bits()-96, 0)
	}
	return p.Bits()
}
