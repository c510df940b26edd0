package hub

// deque is a FIFO of messages in sequence order: append at the back,
// evict from the front, binary search by sequence number.
type deque struct {
	buf  []*Message
	head int
}

func (d *deque) len() int { return len(d.buf) - d.head }

func (d *deque) push(m *Message) { d.buf = append(d.buf, m) }

func (d *deque) front() *Message { return d.buf[d.head] }

func (d *deque) pop() *Message {
	m := d.buf[d.head]
	d.buf[d.head] = nil
	d.head++
	// Reclaim the consumed prefix once it is at least half the slice.
	if d.head >= 32 && d.head*2 >= len(d.buf) {
		n := copy(d.buf, d.buf[d.head:])
		clear(d.buf[n:])
		d.buf = d.buf[:n]
		d.head = 0
	}
	return m
}

// after returns the messages with Seq > seq, oldest first. The result
// aliases the deque and must not be modified.
func (d *deque) after(seq uint64) []*Message {
	live := d.buf[d.head:]
	lo, hi := 0, len(live)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if live[mid].Seq <= seq {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return live[lo:]
}

// compact drops entries that are no longer retained.
func (d *deque) compact() {
	n := 0
	for _, m := range d.buf[d.head:] {
		if m.retained {
			d.buf[n] = m
			n++
		}
	}
	clear(d.buf[n:])
	d.buf = d.buf[:n]
	d.head = 0
}
