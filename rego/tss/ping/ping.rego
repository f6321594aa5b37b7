# PING: the TSS Node checking that this callback server answers. Always
# approved; add a `deny` here to refuse pings (e.g. during maintenance).
package tss.ping

allow := true
