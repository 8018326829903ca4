package edge

import (
	"bufio"
	"bytes"
	"mime"
	"net/textproto"
	"path/filepath"
)

// multipartInfo is what the edge reads from a transcription upload.
type multipartInfo struct {
	boundary string
	model    string
	// valStart/valEnd span the model field's value in the raw body; they
	// come from the same parse that validated the body, so they are always
	// inside it when parseMultipart succeeds.
	valStart, valEnd int
}

var (
	errBadMultipart = badRequest("invalid_multipart", "file", "request must be multipart/form-data with a file and a model field")
	errDupModelPart = badRequest("invalid_request", "model", "request body has more than one model field")
)

// maxModelField caps the model field's value (as the JSON path caps nothing
// smaller than a model name needs).
const maxModelField = 1024

// parseMultipart validates a multipart/form-data body (every part framed,
// a file part present, exactly one model field) and finds the model field's
// value, in one pass and without copying the file.
//
// It frames parts as Go's mime/multipart reader does (the reference its
// fuzz test compares against): the first delimiter line decides CRLF or
// LF-only line endings for the whole body; a delimiter is "--boundary" at a
// line start followed by linear whitespace and the line ending, or by "--"
// (the close delimiter); the preamble and the epilogue are ignored; part
// headers are MIME headers ending at an empty line. Two model fields are
// refused: parsers disagree on which one wins (the JSON path refuses a
// duplicate "model" for the same reason).
func parseMultipart(body, contentType []byte) (multipartInfo, error) {
	info := multipartInfo{valStart: -1, valEnd: -1}
	mt, params, err := mime.ParseMediaType(string(contentType))
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return info, errBadMultipart
	}
	info.boundary = params["boundary"]
	m := mpScanner{body: body, dash: []byte("--" + info.boundary), nl: []byte("\r\n")}
	hasFile, models := false, 0
	for {
		p, ok, err := m.next()
		if err != nil {
			return info, errBadMultipart
		}
		if !ok {
			break
		}
		name, file := formPart(p.disposition)
		switch {
		case name == "model" && file == "":
			models++
			if models > 1 {
				return info, errDupModelPart
			}
			if p.valEnd-p.valStart > maxModelField {
				return info, errBadMultipart
			}
			info.valStart, info.valEnd = p.valStart, p.valEnd
			info.model = string(bytes.TrimSpace(body[p.valStart:p.valEnd]))
		case file != "" || name == "file":
			hasFile = true
		}
	}
	if !hasFile {
		return info, errBadMultipart
	}
	if models == 0 || info.model == "" {
		return info, errNoModel
	}
	return info, nil
}

// mpPart is one part's Content-Disposition and value span.
type mpPart struct {
	disposition      string
	valStart, valEnd int
}

// mpScanner walks a multipart body part by part.
type mpScanner struct {
	body  []byte
	dash  []byte // "--boundary"
	nl    []byte // line ending, "\r\n" until the first delimiter says "\n"
	pos   int
	parts int
	done  bool
}

// line returns the line at pos (with its '\n') and whether one ends there.
func (m *mpScanner) line() ([]byte, bool) {
	rest := m.body[m.pos:]
	if i := bytes.IndexByte(rest, '\n'); i >= 0 {
		return rest[:i+1], true
	}
	return rest, false
}

// isDelimiter reports whether line is "--boundary" + LWSP + nl; on the
// first part an LF-only line switches the scanner to LF line endings.
func (m *mpScanner) isDelimiter(line []byte) bool {
	if !bytes.HasPrefix(line, m.dash) {
		return false
	}
	rest := bytes.TrimLeft(line[len(m.dash):], " \t")
	if m.parts == 0 && len(rest) == 1 && rest[0] == '\n' {
		m.nl = m.nl[1:]
	}
	return bytes.Equal(rest, m.nl)
}

// isClose reports whether line is "--boundary--" + LWSP + (nl or nothing).
func (m *mpScanner) isClose(line []byte) bool {
	if !bytes.HasPrefix(line, m.dash) || !bytes.HasPrefix(line[len(m.dash):], []byte("--")) {
		return false
	}
	rest := bytes.TrimLeft(line[len(m.dash)+2:], " \t")
	return len(rest) == 0 || bytes.Equal(rest, m.nl)
}

// next returns the next part; ok is false after the close delimiter.
func (m *mpScanner) next() (p mpPart, ok bool, err error) {
	if m.done {
		return p, false, nil
	}
	expectPart := false
	for {
		line, full := m.line()
		if !full {
			if m.isClose(line) {
				m.done = true
				return p, false, nil
			}
			return p, false, errBadMultipart
		}
		if m.isDelimiter(line) {
			m.pos += len(line)
			m.parts++
			return m.part()
		}
		if m.isClose(line) {
			m.done = true
			return p, false, nil
		}
		switch {
		case expectPart:
			return p, false, errBadMultipart
		case m.parts == 0: // preamble
		case bytes.Equal(line, m.nl): // the line break before a delimiter
			expectPart = true
		default:
			return p, false, errBadMultipart
		}
		m.pos += len(line)
	}
}

// part reads the headers and finds the value of the part starting at pos.
func (m *mpScanner) part() (p mpPart, ok bool, err error) {
	hs := m.pos
	for {
		line, full := m.line()
		if !full {
			return p, false, errBadMultipart
		}
		m.pos += len(line)
		if len(line) == 1 || len(line) == 2 && line[0] == '\r' {
			break
		}
	}
	h, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(m.body[hs:m.pos]))).ReadMIMEHeader()
	if err != nil {
		return p, false, errBadMultipart
	}
	p.disposition = h.Get("Content-Disposition")
	p.valStart = m.pos
	end, ok := m.valueEnd(m.pos)
	if !ok {
		return p, false, errBadMultipart
	}
	p.valEnd, m.pos = end, end
	return p, true, nil
}

// valueEnd finds where the value starting at vs ends: before the first
// nl+"--boundary" followed by LWSP, a line break or "--"; or at vs itself
// when the value is empty and a delimiter follows at once.
func (m *mpScanner) valueEnd(vs int) (int, bool) {
	if delimAt(m.body[vs:], m.dash) {
		return vs, true
	}
	nlDash := append(append(make([]byte, 0, len(m.nl)+len(m.dash)), m.nl...), m.dash...)
	for i := vs; ; {
		j := bytes.Index(m.body[i:], nlDash)
		if j < 0 {
			return 0, false
		}
		if delimAt(m.body[i+j+len(m.nl):], m.dash) {
			return i + j, true
		}
		i += j + len(nlDash)
	}
}

// delimAt reports whether b starts with dash followed by the end of input,
// linear whitespace, a line break or "--" (mime/multipart's
// matchAfterPrefix with the whole body read).
func delimAt(b, dash []byte) bool {
	if !bytes.HasPrefix(b, dash) {
		return false
	}
	if len(b) == len(dash) {
		return true
	}
	switch c := b[len(dash)]; c {
	case ' ', '\t', '\r', '\n':
		return true
	case '-':
		return len(b) > len(dash)+1 && b[len(dash)+1] == '-'
	}
	return false
}

// formPart returns the form field name and file name of a part, as
// mime/multipart's Part.FormName and Part.FileName read them.
func formPart(disposition string) (name, file string) {
	d, params, err := mime.ParseMediaType(disposition)
	if err != nil {
		return "", ""
	}
	if f := params["filename"]; f != "" { // FileName ignores the disposition type
		file = filepath.Base(f)
	}
	if d == "form-data" {
		name = params["name"]
	}
	return name, file
}

// spliceMultipartModel appends body with the model field's value replaced.
// mp must come from a successful parseMultipart of body.
func spliceMultipartModel(dst, body []byte, mp *multipartInfo, model string) []byte {
	dst = append(dst, body[:mp.valStart]...)
	dst = append(dst, model...)
	return append(dst, body[mp.valEnd:]...)
}
