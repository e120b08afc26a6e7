package exchange

import "testing"

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "512": 512, "8k": 8 << 10, "1m": 1 << 20, "1M": 1 << 20, "2g": 2 << 30, " 3m ": 3 << 20} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "m", "-1", "1.5m", "1t", "1mb", "99999999999g"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, got)
		}
	}
}

func TestParseNextUpstream(t *testing.T) {
	for in, want := range map[string]NextUpstream{"error timeout": NextOnError | NextOnTimeout, "invalid_header": NextOnInvalidHeader, "off": NextOff,
		"error http_502 http_503 non_idempotent":       NextOnError | NextOn502 | NextOn503 | NextNonIdempotent,
		"http_500 http_504 http_403 http_404 http_429": NextOn500 | NextOn504 | NextOn403 | NextOn404 | NextOn429} {
		if got, err := ParseNextUpstream(in); err != nil || got != want {
			t.Errorf("ParseNextUpstream(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "error http_501", "http_", "http_5022", "Error", "updating"} {
		if _, err := ParseNextUpstream(in); err == nil {
			t.Errorf("ParseNextUpstream(%q): want an error", in)
		}
	}
}
