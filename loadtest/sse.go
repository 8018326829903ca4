package loadtest

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// SSE errors reported by SSEReader.Next.
var (
	// ErrBadSSE marks a line that is not an SSE field, or a data payload
	// that is neither a JSON object nor [DONE].
	ErrBadSSE = errors.New("malformed SSE stream")
	// ErrTruncated marks a stream that ended before its [DONE] event.
	ErrTruncated = errors.New("stream ended before [DONE]")
	// ErrStreamError marks an {"error":...} event inside the stream.
	ErrStreamError = errors.New("error event in stream")
)

var (
	sseData   = []byte("data:")
	sseDone   = []byte("[DONE]")
	sseErrObj = []byte(`{"error"`)
)

// SSEReader splits an OpenAI-style server-sent-event stream into events.
// It reuses its buffers: the slice Next returns is valid until the next
// call. Not safe for concurrent use; Reset lets one reader serve many
// streams.
type SSEReader struct {
	br   *bufio.Reader
	data []byte // current event's data
	line []byte // long-line scratch
	done bool
}

// NewSSEReader returns a reader over r.
func NewSSEReader(r io.Reader) *SSEReader {
	return &SSEReader{br: bufio.NewReaderSize(r, 16<<10)}
}

// Reset points the reader at a new stream.
func (s *SSEReader) Reset(r io.Reader) {
	s.br.Reset(r)
	s.data = s.data[:0]
	s.done = false
}

// Next returns the data of the next event (JSON object bytes). At the
// [DONE] event it returns io.EOF; a stream that ends before [DONE] gives
// ErrTruncated; a malformed line or payload gives ErrBadSSE; an
// {"error":…} event gives ErrStreamError with the payload as data. Other
// read errors (timeouts, resets) are returned as they are.
func (s *SSEReader) Next() ([]byte, error) {
	if s.done {
		return nil, io.EOF
	}
	s.data = s.data[:0]
	have := false
	for {
		line, err := s.readLine()
		if err != nil {
			if err == io.EOF {
				if have {
					// A final event without its blank line still counts
					// for the check below, but the stream lacks [DONE].
					return nil, ErrTruncated
				}
				return nil, ErrTruncated
			}
			return nil, err
		}
		if len(line) == 0 { // dispatch
			if !have {
				continue
			}
			d := bytes.TrimSpace(s.data)
			if bytes.Equal(d, sseDone) {
				s.done = true
				return nil, io.EOF
			}
			if len(d) < 2 || d[0] != '{' || d[len(d)-1] != '}' {
				return d, ErrBadSSE
			}
			if bytes.HasPrefix(d, sseErrObj) {
				return d, ErrStreamError
			}
			return d, nil
		}
		switch {
		case bytes.HasPrefix(line, sseData):
			v := line[len(sseData):]
			if len(v) > 0 && v[0] == ' ' {
				v = v[1:]
			}
			if have {
				s.data = append(s.data, '\n')
			}
			s.data = append(s.data, v...)
			have = true
		case line[0] == ':', bytes.HasPrefix(line, []byte("event:")),
			bytes.HasPrefix(line, []byte("id:")), bytes.HasPrefix(line, []byte("retry:")):
		default:
			return line, ErrBadSSE
		}
	}
}

// readLine returns one line without its line ending.
func (s *SSEReader) readLine() ([]byte, error) {
	line, err := s.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		s.line = append(s.line[:0], line...)
		for err == bufio.ErrBufferFull {
			line, err = s.br.ReadSlice('\n')
			s.line = append(s.line, line...)
		}
		line = s.line
	}
	if err != nil {
		if err == io.EOF && len(line) > 0 {
			// Unterminated last line: treat as a line; EOF comes next.
			err = nil
		} else {
			return nil, err
		}
	}
	line = bytes.TrimRight(line, "\r\n")
	return line, nil
}
