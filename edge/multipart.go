package edge

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
)

// multipartInfo is what the edge reads from a transcription upload.
type multipartInfo struct {
	boundary string
	model    string
	// valStart/valEnd span the model field's value in the raw body.
	valStart, valEnd int
}

var errBadMultipart = badRequest("invalid_multipart", "file", "request must be multipart/form-data with a file and a model field")

// parseMultipart validates a multipart/form-data body (every part readable,
// a file part present) and finds the model field, without copying the file.
func parseMultipart(body, contentType []byte) (multipartInfo, error) {
	var info multipartInfo
	mt, params, err := mime.ParseMediaType(string(contentType))
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return info, errBadMultipart
	}
	info.boundary = params["boundary"]
	r := multipart.NewReader(bytes.NewReader(body), info.boundary)
	hasFile := false
	modelSeen := false
	for {
		p, err := r.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return info, errBadMultipart
		}
		switch {
		case p.FormName() == "model" && p.FileName() == "":
			v, err := io.ReadAll(io.LimitReader(p, 1024))
			if err != nil {
				return info, errBadMultipart
			}
			info.model = string(bytes.TrimSpace(v))
			modelSeen = true
		case p.FileName() != "" || p.FormName() == "file":
			hasFile = true
			if _, err := io.Copy(io.Discard, p); err != nil {
				return info, errBadMultipart
			}
		default:
			if _, err := io.Copy(io.Discard, p); err != nil {
				return info, errBadMultipart
			}
		}
	}
	if !hasFile {
		return info, errBadMultipart
	}
	if !modelSeen || info.model == "" {
		return info, errNoModel
	}
	info.valStart, info.valEnd = findMultipartValue(body, info.boundary, "model")
	return info, nil
}

// findMultipartValue returns the span of the first non-file part named name.
func findMultipartValue(body []byte, boundary, name string) (int, int) {
	delim := []byte("--" + boundary)
	i := 0
	for {
		j := bytes.Index(body[i:], delim)
		if j < 0 {
			return -1, -1
		}
		hs := i + j + len(delim)
		he := bytes.Index(body[hs:], []byte("\r\n\r\n"))
		if he < 0 {
			return -1, -1
		}
		hdr := body[hs : hs+he]
		vs := hs + he + 4
		ve := bytes.Index(body[vs:], append([]byte("\r\n"), delim...))
		if ve < 0 {
			return -1, -1
		}
		if isFormPart(hdr, name) {
			return vs, vs + ve
		}
		i = vs + ve
	}
}

func isFormPart(hdr []byte, name string) bool {
	for _, line := range bytes.Split(hdr, []byte("\r\n")) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok || !bytes.EqualFold(bytes.TrimSpace(k), []byte("Content-Disposition")) {
			continue
		}
		_, params, err := mime.ParseMediaType(string(bytes.TrimSpace(v)))
		return err == nil && params["name"] == name && params["filename"] == ""
	}
	return false
}

// spliceMultipartModel appends body with the model field's value replaced.
func spliceMultipartModel(dst, body []byte, mp *multipartInfo, model string) []byte {
	if mp.valStart < 0 || mp.valEnd > len(body) || mp.valStart > mp.valEnd {
		return append(dst, body...)
	}
	dst = append(dst, body[:mp.valStart]...)
	dst = append(dst, model...)
	return append(dst, body[mp.valEnd:]...)
}
