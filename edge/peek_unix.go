//go:build unix

package edge

import (
	"net"
	"reflect"
	"syscall"
)

// ClientGone reports whether the client closed its connection: a
// non-blocking peek finds end of file or an error (not "no data yet").
// Bytes waiting (a pipelined request) mean the client is there. The peek
// uses RawConn.Control, which ignores the connection's deadlines.
func ClientGone(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		// fasthttp wraps connections it counts per address (MaxConnsPerIP)
		// in a struct embedding the net.Conn.
		v := reflect.ValueOf(c)
		if v.Kind() == reflect.Pointer && v.Elem().Kind() == reflect.Struct {
			if f := v.Elem().FieldByName("Conn"); f.IsValid() && f.CanInterface() {
				sc, ok = f.Interface().(syscall.Conn)
			}
		}
		if !ok {
			return false
		}
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	gone := false
	_ = rc.Control(func(fd uintptr) {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == nil:
			gone = n == 0
		case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK || err == syscall.EINTR:
		default:
			gone = true
		}
	})
	return gone
}
