package proxy

// makeRoom returns buf with at least min bytes free after its end. The
// bytes in use, buf[off:], are moved to the front when move is set and
// that makes room (the caller holds no string into buf[:off]); else buf
// grows.
func makeRoom(buf []byte, off int, move bool, min int) ([]byte, int) {
	if cap(buf)-len(buf) >= min {
		return buf, off
	}
	if move && off > 0 {
		buf, off = buf[:copy(buf, buf[off:])], 0
	}
	if cap(buf)-len(buf) < min {
		b := make([]byte, len(buf), max(2*cap(buf), 4*min))
		copy(b, buf)
		buf = b
	}
	return buf, off
}
