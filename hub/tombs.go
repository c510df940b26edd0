package hub

import "hash/maphash"

// tombBuckets is how many buckets remember the last sequence numbers of
// removed topics: 4 MiB once every shard has removed a topic, each shard
// having its share. A topic shares its bucket with others; a resume on
// it is reset only if a topic in the same bucket lost messages after the
// cursor, so K removed topics give a cursor older than all of them a
// chance of about 1-exp(-K/2^20) of a reset it did not need (1% for
// 10,000, 13% for 150,000): a shard holds 1/numShards of the topics and
// of the buckets.
const tombBuckets = 1 << 20

// shardTombBuckets is how many buckets one shard has.
const shardTombBuckets = tombBuckets / numShards

// tombs remembers, in bounded memory, how far removed topics had lost
// messages, so that a cursor older than that still gets a reset when the
// topic comes back. It never forgets too little: a topic's bucket holds
// the highest sequence number of every removed topic hashed to it.
type tombs struct {
	seed maphash.Seed
	// Bucket i stands for the sequence number base+buckets[i]; base rises
	// when a sequence number no longer fits, raising every bucket at
	// least to it (a rise only costs resets, never a missed one).
	base    uint64
	buckets []uint32 // allocated with the first tombstone
}

func newTombs() tombs { return tombs{seed: maphash.MakeSeed()} }

// lost returns a sequence number up to which topic name may have lost
// messages: 0 for a topic never removed, unless a bucket it shares says
// more.
func (t *tombs) lost(name string) uint64 {
	if t.buckets == nil {
		return 0
	}
	return t.base + uint64(t.buckets[t.bucket(name)])
}

// remember records that topic name, being removed, lost every message up
// to seq.
func (t *tombs) remember(name string, seq uint64) {
	if seq <= t.base && t.buckets != nil {
		return
	}
	if t.buckets == nil {
		t.buckets = make([]uint32, shardTombBuckets)
	}
	if seq-t.base > 1<<32-1 {
		t.rebase(seq - 1<<31)
	}
	i := t.bucket(name)
	t.buckets[i] = max(t.buckets[i], uint32(seq-t.base))
}

// rebase moves the base up to base; buckets below it rise to it.
func (t *tombs) rebase(base uint64) {
	d := base - t.base
	for i, v := range t.buckets {
		if uint64(v) <= d {
			t.buckets[i] = 0
		} else {
			t.buckets[i] = v - uint32(d)
		}
	}
	t.base = base
}

func (t *tombs) bucket(name string) uint64 {
	return maphash.String(t.seed, name) % shardTombBuckets
}
