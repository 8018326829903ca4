package edge

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"image"
	"image/png"
	"io"
	"net/http"
	"testing"

	"github.com/openai/openai-go"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/loadtest/sim"
)

// mediaStack adds a speech service (tts-1) and an image service
// (sdxl-turbo) on host gpu2 to the usual stack.
func mediaStack(t *testing.T) (s *stack, tts, img *sim.Server) {
	t.Helper()
	s = newStack(t)
	tts = startSim(t, sim.Config{Models: []sim.Model{{Name: "tts-1"}}})
	img = startSim(t, sim.Config{Models: []sim.Model{{Name: "sdxl-turbo"}}})
	heartbeat(t, s.store, "gpu2",
		svc("gpu2", "tts", fleet.KindSpeech, tts.URL(), fleet.Asset{Name: "tts-1", Loaded: true}),
		svc("gpu2", "img", fleet.KindImages, img.URL(), fleet.Asset{Name: "sdxl-turbo", Loaded: true}),
	)
	s.waitFor(func(sn *fleet.Snapshot) bool { return sn.ByID["gpu2/tts"] != nil && sn.ByID["gpu2/img"] != nil })
	return s, tts, img
}

// TestSpeechThroughEdge: /v1/audio/speech reaches a speech service and the
// audio comes back byte for byte with its Content-Type; the client's key
// does not reach the upstream; the wrong kind of model is a 404.
func TestSpeechThroughEdge(t *testing.T) {
	s, tts, _ := mediaStack(t)
	c := s.client()
	ctx := context.Background()
	res, err := c.Audio.Speech.New(ctx, openai.AudioSpeechNewParams{
		Model: "tts-1", Input: "The hive is humming along nicely today.", Voice: openai.AudioSpeechNewParamsVoiceCoral,
		ResponseFormat: openai.AudioSpeechNewParamsResponseFormatWAV,
	})
	if err != nil {
		t.Fatal(err)
	}
	audio, _ := io.ReadAll(res.Body)
	res.Body.Close()
	hdr := res.Header
	ct, want, _ := sim.SpeechAudio("The hive is humming along nicely today.", "coral", "wav")
	if hdr.Get("Content-Type") != ct || !bytes.Equal(audio, want) {
		t.Fatalf("speech: %s, %d bytes (want %s, %d)", hdr.Get("Content-Type"), len(audio), ct, len(want))
	}
	if hdr.Get("X-GenieHive-Service") != "gpu2/tts" || hdr.Get("X-GenieHive-Model") != "tts-1" {
		t.Fatalf("routing headers %v", hdr)
	}
	up := tts.LastRequest()
	if up == nil || up.Path != "/v1/audio/speech" || up.Header.Get("Authorization") != "" {
		t.Fatalf("upstream request %+v", up)
	}
	// mp3 (the default format) too.
	res, err = c.Audio.Speech.New(ctx, openai.AudioSpeechNewParams{Model: "tts-1", Input: "hi", Voice: openai.AudioSpeechNewParamsVoiceAlloy})
	if err != nil {
		t.Fatal(err)
	}
	audio, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if _, want, _ := sim.SpeechAudio("hi", "alloy", "mp3"); res.Header.Get("Content-Type") != "audio/mpeg" || !bytes.Equal(audio, want) {
		t.Fatalf("mp3: %s %d bytes", res.Header.Get("Content-Type"), len(audio))
	}

	// A chat model has no speech service: 404 naming what speaks.
	r, b := do(t, "POST", s.url+"/v1/audio/speech", testKey, []byte(`{"model":"llama3.1:8b","input":"hi","voice":"alloy"}`), nil)
	if r.StatusCode != 404 || !contains(b, "model_not_found") || !contains(b, "tts-1") {
		t.Fatalf("speech on a chat model: %d %s", r.StatusCode, b)
	}
	// The upstream's own refusal (no voice) is relayed as the client's fault.
	r, b = do(t, "POST", s.url+"/v1/audio/speech", testKey, []byte(`{"model":"tts-1","input":"hi"}`), nil)
	if r.StatusCode != 400 || !contains(b, `"param":"voice"`) {
		t.Fatalf("speech without voice: %d %s", r.StatusCode, b)
	}
}

// TestImagesThroughEdge: /v1/images/generations reaches an image service;
// b64_json images decode at the asked size, URLs can be fetched.
func TestImagesThroughEdge(t *testing.T) {
	s, _, img := mediaStack(t)
	c := s.client()
	ctx := context.Background()
	res, err := c.Images.Generate(ctx, openai.ImageGenerateParams{
		Model: "sdxl-turbo", Prompt: "a honeycomb at dawn", N: openai.Int(2), Size: "256x256",
		ResponseFormat: openai.ImageGenerateParamsResponseFormatB64JSON,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Created == 0 || len(res.Data) != 2 {
		t.Fatalf("images: %+v", res)
	}
	for i, d := range res.Data {
		raw, err := base64.StdEncoding.DecodeString(d.B64JSON)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := sim.ImageBytes("a honeycomb at dawn", i, 256, 256, "png")
		im, err := png.Decode(bytes.NewReader(raw))
		if err != nil || im.Bounds() != image.Rect(0, 0, 256, 256) || !bytes.Equal(raw, want) {
			t.Fatalf("image %d: %v", i, err)
		}
	}
	res, err = c.Images.Generate(ctx, openai.ImageGenerateParams{Model: "sdxl-turbo", Prompt: "bees", Size: "32x32"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Data) != 1 || res.Data[0].URL != img.URL()+sim.ImagePath("bees", 0, 32, 32, "png") {
		t.Fatalf("url form: %+v", res.Data)
	}
	resp, err := http.Get(res.Data[0].URL)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if im, err := png.Decode(bytes.NewReader(raw)); err != nil || im.Bounds().Dx() != 32 {
		t.Fatalf("fetched image: %v", err)
	}
	// A speech model does not draw: 404; a bad size is the upstream's 400.
	_, err = c.Images.Generate(ctx, openai.ImageGenerateParams{Model: "tts-1", Prompt: "x"})
	var ae *openai.Error
	if !errors.As(err, &ae) || ae.StatusCode != 404 {
		t.Fatalf("images on a speech model: %v", err)
	}
	_, err = c.Images.Generate(ctx, openai.ImageGenerateParams{Model: "sdxl-turbo", Prompt: "x", Size: "huge"})
	if !errors.As(err, &ae) || ae.StatusCode != 400 || ae.Param != "size" {
		t.Fatalf("bad size: %v", err)
	}
}
