//go:build !unix

package edge

import "net"

// ClientGone cannot peek here: a gone client is noticed when the answer
// is written.
func ClientGone(net.Conn) bool { return false }
