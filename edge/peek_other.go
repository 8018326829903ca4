//go:build !unix

package edge

import "net"

// clientGone cannot peek here: a gone client is noticed when the answer
// is written.
func clientGone(net.Conn) bool { return false }
