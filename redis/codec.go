package redis

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-push/push/hub"
)

// batch is one pub/sub message: the messages of one publish.
type batch struct {
	epoch string
	first uint64
	time  time.Time
	msgs  []*hub.Message
}

func (b *batch) last() uint64 { return b.first + uint64(len(b.msgs)) - 1 }

var errMalformed = errors.New("malformed pub/sub message")

// maxBatchLen bounds how many messages one pub/sub message may announce.
const maxBatchLen = 1 << 16

// decodeBatch parses what publishScript publishes:
// "<epoch>\n<first>\n<ms>\n" then, per message, topic, event and data,
// each as "<length>:<bytes>".
func decodeBatch(p string) (*batch, error) {
	var b batch
	var line string
	var ok bool
	if b.epoch, p, ok = strings.Cut(p, "\n"); !ok || b.epoch == "" {
		return nil, errMalformed
	}
	if line, p, ok = strings.Cut(p, "\n"); !ok {
		return nil, errMalformed
	}
	first, err := strconv.ParseUint(line, 10, 64)
	if err != nil || first == 0 {
		return nil, errMalformed
	}
	b.first = first
	if line, p, ok = strings.Cut(p, "\n"); !ok {
		return nil, errMalformed
	}
	ms, err := strconv.ParseInt(line, 10, 64)
	if err != nil {
		return nil, errMalformed
	}
	b.time = time.UnixMilli(ms)
	for p != "" {
		if len(b.msgs) >= maxBatchLen {
			return nil, errMalformed
		}
		var topic, event, data string
		if topic, p, ok = field(p); !ok {
			return nil, errMalformed
		}
		if event, p, ok = field(p); !ok {
			return nil, errMalformed
		}
		if data, p, ok = field(p); !ok {
			return nil, errMalformed
		}
		b.msgs = append(b.msgs, &hub.Message{
			Topic: topic,
			Event: event,
			Data:  []byte(data),
			Seq:   b.first + uint64(len(b.msgs)),
			Time:  b.time,
		})
	}
	if len(b.msgs) == 0 || b.last() < b.first {
		return nil, errMalformed
	}
	return &b, nil
}

// field reads "<length>:<bytes>" from the front of p.
func field(p string) (v, rest string, ok bool) {
	i := strings.IndexByte(p, ':')
	if i <= 0 || i > 10 {
		return "", "", false
	}
	n, err := strconv.Atoi(p[:i])
	if err != nil || n < 0 || n > len(p)-i-1 {
		return "", "", false
	}
	return p[i+1 : i+1+n], p[i+1+n:], true
}
