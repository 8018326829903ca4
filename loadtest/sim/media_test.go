package sim

import (
	"bytes"
	"context"
	"encoding/base64"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go"
)

func mediaCfg() Config {
	return Config{Flavor: FlavorOpenAI, Models: []Model{
		{Name: "tts-1"}, {Name: "kokoro", Kind: KindSpeech}, {Name: "sdxl-turbo"}, {Name: "llama3.2:3b"},
	}}
}

func TestMediaKindsInferred(t *testing.T) {
	s := start(t, mediaCfg())
	kinds := map[string]string{}
	for _, m := range s.Models() {
		kinds[m.Name] = m.Kind
	}
	if kinds["tts-1"] != KindSpeech || kinds["kokoro"] != KindSpeech || kinds["sdxl-turbo"] != KindImages || kinds["llama3.2:3b"] != KindChat {
		t.Fatalf("kinds %v", kinds)
	}
	if err := (&Config{Models: []Model{{Name: "x", Kind: "video"}}}).Validate(); err == nil {
		t.Fatal("unknown kind accepted")
	}
}

// TestSpeechWireFormat drives /v1/audio/speech with the OpenAI SDK: audio
// bytes with each format's Content-Type and signature.
func TestSpeechWireFormat(t *testing.T) {
	s := start(t, mediaCfg())
	c := client(s)
	ctx := context.Background()
	for _, tc := range []struct{ format, ct, magic string }{
		{"", "audio/mpeg", "\xff\xfb"},
		{"mp3", "audio/mpeg", "\xff\xfb"},
		{"wav", "audio/wav", "RIFF"},
		{"flac", "audio/flac", "fLaC"},
		{"opus", "audio/opus", "OggS"},
		{"aac", "audio/aac", "\xff\xf1"},
		{"pcm", "audio/pcm", ""},
	} {
		p := openai.AudioSpeechNewParams{Model: "tts-1", Input: "Hello from the hive.", Voice: openai.AudioSpeechNewParamsVoiceAlloy}
		if tc.format != "" {
			p.ResponseFormat = openai.AudioSpeechNewParamsResponseFormat(tc.format)
		}
		res, err := c.Audio.Speech.New(ctx, p)
		if err != nil {
			t.Fatalf("%s: %v", tc.format, err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if got := res.Header.Get("Content-Type"); got != tc.ct {
			t.Errorf("%s: Content-Type %q, want %q", tc.format, got, tc.ct)
		}
		ct, want, _ := SpeechAudio("Hello from the hive.", "alloy", tc.format)
		if ct != tc.ct || !bytes.Equal(body, want) || !strings.HasPrefix(string(body), tc.magic) || len(body) < 1000 {
			t.Errorf("%s: %d bytes starting %q", tc.format, len(body), body[:min(8, len(body))])
		}
	}
	// WAV is a real one: header sizes match the data.
	_, wav, _ := SpeechAudio("one two three", "nova", "wav")
	if string(wav[8:16]) != "WAVEfmt " || int(wav[40])|int(wav[41])<<8|int(wav[42])<<16 != len(wav)-44 {
		t.Fatalf("wav header %q", wav[:44])
	}
	// Longer input, longer audio; another voice, other bytes.
	_, a, _ := SpeechAudio("one", "alloy", "pcm")
	_, b, _ := SpeechAudio("one two three four", "alloy", "pcm")
	_, v, _ := SpeechAudio("one", "echo", "pcm")
	if len(b) <= len(a) || bytes.Equal(a, v) {
		t.Fatal("audio does not depend on input and voice")
	}

	for _, bad := range []struct{ body, param string }{
		{`{"model":"tts-1","voice":"alloy"}`, "input"},
		{`{"model":"tts-1","input":"hi"}`, "voice"},
		{`{"model":"tts-1","input":"hi","voice":"robot"}`, "voice"},
		{`{"model":"tts-1","input":"hi","voice":"alloy","response_format":"ogg"}`, "response_format"},
		{`{"model":"tts-1","input":"hi","voice":"alloy","speed":9}`, "speed"},
		{`{"model":"llama3.2:3b","input":"hi","voice":"alloy"}`, "model"},
	} {
		resp, err := http.Post(s.URL()+"/v1/audio/speech", "application/json", strings.NewReader(bad.body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(string(b), `"param":"`+bad.param+`"`) {
			t.Errorf("%s: %d %s", bad.body, resp.StatusCode, b)
		}
	}
}

// TestImagesWireFormat drives /v1/images/generations with the OpenAI SDK:
// b64_json images decode to the asked size; url ones can be fetched.
func TestImagesWireFormat(t *testing.T) {
	s := start(t, mediaCfg())
	c := client(s)
	ctx := context.Background()
	res, err := c.Images.Generate(ctx, openai.ImageGenerateParams{
		Model: "sdxl-turbo", Prompt: "a bee on a hexagon", N: openai.Int(2), Size: "256x256",
		ResponseFormat: openai.ImageGenerateParamsResponseFormatB64JSON,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Created == 0 || len(res.Data) != 2 {
		t.Fatalf("response %+v", res)
	}
	for i, d := range res.Data {
		raw, err := base64.StdEncoding.DecodeString(d.B64JSON)
		if err != nil || d.URL != "" || d.RevisedPrompt != "a bee on a hexagon" {
			t.Fatalf("data[%d]: %v %+v", i, err, d)
		}
		img, err := png.Decode(bytes.NewReader(raw))
		if err != nil || img.Bounds() != image.Rect(0, 0, 256, 256) {
			t.Fatalf("data[%d]: %v %v", i, err, img.Bounds())
		}
		want, _ := ImageBytes("a bee on a hexagon", i, 256, 256, "png")
		if !bytes.Equal(raw, want) {
			t.Fatalf("data[%d] is not ImageBytes", i)
		}
	}
	if res.Data[0].B64JSON == res.Data[1].B64JSON {
		t.Fatal("n=2 gave the same image twice")
	}

	// URL form (the default), JPEG output.
	res, err = c.Images.Generate(ctx, openai.ImageGenerateParams{Model: "sdxl-turbo", Prompt: "honey", Size: "64x32", OutputFormat: "jpeg"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Data) != 1 || !strings.HasPrefix(res.Data[0].URL, s.URL()+"/v1/images/files/") || res.Data[0].B64JSON != "" {
		t.Fatalf("url response %+v", res.Data)
	}
	resp, err := http.Get(res.Data[0].URL)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	img, err := jpeg.Decode(bytes.NewReader(raw))
	if resp.Header.Get("Content-Type") != "image/jpeg" || err != nil || img.Bounds() != image.Rect(0, 0, 64, 32) {
		t.Fatalf("fetched %s: %v %v", resp.Header.Get("Content-Type"), err, img)
	}

	for _, bad := range []struct{ body, param string }{
		{`{"model":"sdxl-turbo"}`, "prompt"},
		{`{"model":"sdxl-turbo","prompt":"x","n":11}`, "n"},
		{`{"model":"sdxl-turbo","prompt":"x","size":"big"}`, "size"},
		{`{"model":"sdxl-turbo","prompt":"x","response_format":"raw"}`, "response_format"},
		{`{"model":"sdxl-turbo","prompt":"x","output_format":"gif"}`, "output_format"},
		{`{"model":"tts-1","prompt":"x"}`, "model"},
	} {
		resp, err := http.Post(s.URL()+"/v1/images/generations", "application/json", strings.NewReader(bad.body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(string(b), `"param":"`+bad.param+`"`) {
			t.Errorf("%s: %d %s", bad.body, resp.StatusCode, b)
		}
	}
}
