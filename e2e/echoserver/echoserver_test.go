package echoserver

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestEcho(t *testing.T) {
	srv := httptest.NewServer(Handler(Context{Namespace: "ns", Service: "svc", Pod: "pod-1"}))
	defer srv.Close()

	req, _ := http.NewRequest(http.MethodPut, srv.URL+"/foo/bar?x=1", nil)
	req.Host = "example.com"
	req.Header.Set("X-Test", "yes")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var got Response
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	want := Response{Path: "/foo/bar?x=1", Host: "example.com", Method: "PUT", Proto: "HTTP/1.1",
		Context: Context{Namespace: "ns", Service: "svc", Pod: "pod-1"}}
	if got.Path != want.Path || got.Host != want.Host || got.Method != want.Method ||
		got.Proto != want.Proto || got.Context != want.Context {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if h := got.Headers["X-Test"]; len(h) != 1 || h[0] != "yes" {
		t.Errorf("headers = %v", got.Headers)
	}
}

func TestHealth(t *testing.T) {
	srv := httptest.NewServer(Handler(Context{}))
	defer srv.Close()
	for _, p := range []string{"/health", "//health"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/plain" {
			t.Errorf("%s: status %d, type %q", p, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
}
