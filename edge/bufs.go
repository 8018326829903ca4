package edge

import "github.com/valyala/bytebufferpool"

var bufPool bytebufferpool.Pool

func getBuf() *bytebufferpool.ByteBuffer  { return bufPool.Get() }
func putBuf(b *bytebufferpool.ByteBuffer) { bufPool.Put(b) }

type bbuf = bytebufferpool.ByteBuffer
