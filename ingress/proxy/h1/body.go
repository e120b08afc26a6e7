package h1

import (
	"bytes"
	"errors"
	"io"
)

// MaxLine bounds a chunk-size line and a trailer field line: a reader's
// buffer must hold one whole.
const MaxLine = 4096

// ErrChunk is chunked framing the codec refuses: a chunk-size line another
// reader could read otherwise, data not followed by its line end, a
// malformed trailer section.
var ErrChunk = errors.New("malformed chunked body")

// PieceKind says what a Piece of a body is.
type PieceKind uint8

const (
	// More: the input holds nothing whole yet; read more.
	More PieceKind = iota
	// Data: bytes of the body.
	Data
	// Trailer: a field of the trailer section of a chunked body.
	Trailer
	// End: the body ended.
	End
)

// Piece is what Body.Next found: body bytes (a sub-slice of its input), a
// trailer field (pointing into its input), or the end.
type Piece struct {
	Kind  PieceKind
	Data  []byte
	Field Field
}

// Body reads the framing of one message body, piece by piece, from
// whatever part of it the caller holds: bytes of a given length, chunks,
// or everything up to the end of the connection.
type Body struct {
	mode   bodyMode
	state  chunkState
	left   int64 // bytes left: of the body, or of the current chunk
	fields int   // trailer fields read
	done   bool
}

type bodyMode uint8

const (
	byLength bodyMode = iota
	byChunks
	byClose
)

type chunkState uint8

const (
	chunkSize chunkState = iota
	chunkData
	chunkEnd
	chunkTrailer
)

// Reset starts a body: chunked, else length bytes when length >= 0, else
// up to the end of the input.
func (b *Body) Reset(length int64, chunked bool) {
	*b = Body{left: length}
	switch {
	case chunked:
		b.mode = byChunks
	case length < 0:
		b.mode = byClose
	}
}

// ResetResponse starts the body of res, an answer to a request of method:
// none when the method or the status say so, whatever the head says (RFC
// 9112, 6.3).
func (b *Body) ResetResponse(method string, res *Response) {
	if NoBody(method, res.Status) {
		b.Reset(0, false)
		return
	}
	b.Reset(res.Length, res.Chunked)
}

// Done reports whether the body ended.
func (b *Body) Done() bool { return b.done }

// Chunked reports whether the body is chunked.
func (b *Body) Chunked() bool { return b.mode == byChunks }

// Next reads the next piece of the body from in, which starts where the
// last call's n left off; eof says that nothing follows in. It returns the
// piece and the number of bytes of in it took. A Piece of kind More says
// that the rest of in holds nothing whole (it may have taken some
// framing): the caller reads more and calls again with what is left.
func (b *Body) Next(in []byte, eof bool) (Piece, int, error) {
	if b.done {
		return Piece{Kind: End}, 0, nil
	}
	switch b.mode {
	case byLength:
		if b.left == 0 {
			b.done = true
			return Piece{Kind: End}, 0, nil
		}
		if len(in) == 0 {
			return more(eof)
		}
		n := int(min(b.left, int64(len(in))))
		b.left -= int64(n)
		return Piece{Kind: Data, Data: in[:n]}, n, nil
	case byClose:
		if len(in) == 0 {
			if eof {
				b.done = true
				return Piece{Kind: End}, 0, nil
			}
			return Piece{}, 0, nil
		}
		return Piece{Kind: Data, Data: in}, len(in), nil
	}
	return b.nextChunk(in, eof)
}

func more(eof bool) (Piece, int, error) { return stop(0, eofError(eof)) }

func eofError(eof bool) error {
	if eof {
		return io.ErrUnexpectedEOF
	}
	return nil
}

// stop ends a call that found nothing whole after taking n bytes of
// framing: with err, when the input cannot go on; else with More, the n
// bytes taken.
func stop(n int, err error) (Piece, int, error) {
	if n > 0 {
		return Piece{Kind: More}, n, nil
	}
	return Piece{Kind: More}, 0, err
}

func (b *Body) nextChunk(in []byte, eof bool) (Piece, int, error) {
	n := 0
	for {
		rest := in[n:]
		switch b.state {
		case chunkSize:
			line, used, err := takeLine(rest, eof)
			if used == 0 {
				return stop(n, err)
			}
			size, ok := parseChunkSize(line)
			if !ok {
				return Piece{}, 0, ErrChunk
			}
			n += used
			if size == 0 {
				b.state = chunkTrailer
			} else {
				b.state, b.left = chunkData, size
			}
		case chunkData:
			if len(rest) == 0 {
				return stop(n, eofError(eof))
			}
			d := int(min(b.left, int64(len(rest))))
			if b.left -= int64(d); b.left == 0 {
				b.state = chunkEnd
			}
			return Piece{Kind: Data, Data: rest[:d]}, n + d, nil
		case chunkEnd:
			switch {
			case len(rest) >= 2 && rest[0] == '\r' && rest[1] == '\n':
				n += 2
			case len(rest) == 0 || len(rest) == 1 && rest[0] == '\r':
				return stop(n, eofError(eof))
			default:
				return Piece{}, 0, ErrChunk
			}
			b.state = chunkSize
		case chunkTrailer:
			line, used, err := takeLine(rest, eof)
			if used == 0 {
				return stop(n, err)
			}
			if len(line) == 0 {
				b.done = true
				return Piece{Kind: End}, n + used, nil
			}
			f, ok := parseField(line)
			if !ok || b.fields == MaxFields {
				return Piece{}, 0, ErrChunk
			}
			b.fields++
			return Piece{Kind: Trailer, Field: f}, n + used, nil
		}
	}
}

// takeLine takes a whole line from the start of in and returns it without
// its line end, and the bytes it took; 0 when in holds no whole line. In a
// chunked body every line ends with CRLF: a lone LF, which some readers
// take as a line end and others as data, is refused.
func takeLine(in []byte, eof bool) (line []byte, used int, err error) {
	i := bytes.IndexByte(in, '\n')
	if i < 0 {
		switch {
		case len(in) >= MaxLine:
			return nil, 0, ErrChunk
		case eof:
			return nil, 0, io.ErrUnexpectedEOF
		}
		return nil, 0, nil
	}
	if i+1 > MaxLine {
		return nil, 0, ErrChunk
	}
	if i == 0 || in[i-1] != '\r' {
		return nil, 0, ErrChunk
	}
	line = in[:i-1]
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, 0, ErrChunk
	}
	return line, i + 1, nil
}

// parseChunkSize parses a chunk-size line: hex digits, then optional
// blanks and either the line's end or a chunk extension, which is ignored
// but may hold no control byte. Anything else is refused: a size read more
// leniently than another reader reads it would frame the body otherwise.
func parseChunkSize(line []byte) (int64, bool) {
	var size int64
	i := 0
	for ; i < len(line); i++ {
		c := line[i]
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			goto rest
		}
		if i == 15 {
			return 0, false // 2^60 bytes and more
		}
		size = size<<4 | int64(d)
	}
rest:
	if i == 0 {
		return 0, false
	}
	ext := bytes.TrimLeft(line[i:], " \t")
	if len(ext) == 0 {
		return size, true
	}
	if ext[0] != ';' {
		return 0, false
	}
	for _, c := range ext {
		if c < ' ' && c != '\t' || c == 0x7f {
			return 0, false
		}
	}
	return size, true
}
