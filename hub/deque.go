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
		d.reclaim(d.buf[d.head:])
	} else if d.head == len(d.buf) && cap(d.buf) > 4 {
		d.buf, d.head = nil, 0
	}
	return m
}

// reclaim makes live, the tail of d.buf, the whole deque, in a smaller
// array if the present one is four times as large as needed.
func (d *deque) reclaim(live []*Message) {
	if cap(d.buf) >= 64 && len(live)*4 <= cap(d.buf) {
		d.buf = append(make([]*Message, 0, 2*len(live)), live...)
	} else {
		n := copy(d.buf, live)
		clear(d.buf[n:])
		d.buf = d.buf[:n]
	}
	d.head = 0
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
	live := d.buf[d.head:d.head]
	for _, m := range d.buf[d.head:] {
		if m.retained {
			live = append(live, m)
		}
	}
	d.reclaim(live)
}
