package proxy

import (
	"fmt"
	"os"
	"sync"
)

// reqBody is a request body received whole before the request goes
// upstream, as nginx buffers bodies (client_body_buffer_size,
// client_body_temp_path): its first bytes in memory, up to a bound, the
// rest in an unlinked temporary file. An endpoint's connection is taken
// only once the body is all in, so a slow upload holds none, however slow;
// a body whose framing breaks never reaches an endpoint; and a request
// tried again carries all of its body.
type reqBody struct {
	mem  []byte
	file *os.File
	size int64
	// memMax bounds mem; dir is where the file goes.
	memMax int
	dir    string
}

// memBufs are body memory buffers, kept between requests.
var memBufs sync.Pool

// start makes b an empty body.
func (b *reqBody) start(memMax int, dir string) {
	b.reset()
	b.memMax, b.dir = memMax, dir
}

// write appends p to the body.
func (b *reqBody) write(p []byte) error {
	b.size += int64(len(p))
	if b.file == nil {
		if b.mem == nil {
			// At its full size at once: a buffer that grows leaves
			// garbage behind, which is memory too until it is collected.
			if m, ok := memBufs.Get().(*[]byte); ok && cap(*m) == b.memMax {
				b.mem = (*m)[:0]
			} else {
				b.mem = make([]byte, 0, b.memMax)
			}
		}
		room := b.memMax - len(b.mem)
		if len(p) <= room {
			b.mem = append(b.mem, p...)
			return nil
		}
		b.mem = append(b.mem, p[:room]...)
		p = p[room:]
		f, err := os.CreateTemp(b.dir, "portico-body-")
		if err != nil {
			return fmt.Errorf("buffering a request body: %w", err)
		}
		_ = os.Remove(f.Name()) // unlinked: gone with its descriptor
		b.file = f
	}
	if _, err := b.file.Write(p); err != nil {
		return fmt.Errorf("buffering a request body: %w", err)
	}
	return nil
}

// readAt reads the body from offset off into p, as io.ReaderAt.
func (b *reqBody) readAt(p []byte, off int64) (int, error) {
	n := 0
	if off < int64(len(b.mem)) {
		n = copy(p, b.mem[off:])
		off += int64(n)
		p = p[n:]
	}
	if len(p) == 0 || b.file == nil {
		return n, nil
	}
	m, err := b.file.ReadAt(p[:min(int64(len(p)), b.size-off)], off-int64(len(b.mem)))
	return n + m, err
}

// reset empties the body and gives its memory and file back.
func (b *reqBody) reset() {
	if b.file != nil {
		b.file.Close()
		b.file = nil
	}
	if b.mem != nil {
		m := b.mem[:0]
		memBufs.Put(&m)
		b.mem = nil
	}
	b.size = 0
}
