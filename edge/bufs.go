package edge

import "github.com/valyala/bytebufferpool"

var bufPool bytebufferpool.Pool

// maxPooledBuf is the largest buffer put back into a pool: one huge body
// or answer must not stay pinned in a pool after its request.
const maxPooledBuf = 1 << 20

func getBuf() *bytebufferpool.ByteBuffer { return bufPool.Get() }

func putBuf(b *bytebufferpool.ByteBuffer) {
	if cap(b.B) > maxPooledBuf {
		b.B = nil
	}
	bufPool.Put(b)
}

type bbuf = bytebufferpool.ByteBuffer
