package resolver

import (
	"container/list"
	"time"
)

// lru is a bounded TTL cache. When full it drops the least recently used
// entry, which under a flood of distinct names keeps the hot ones (the
// SCP's few endpoints). Expired entries go when next looked up. Not safe
// for concurrent use: the Resolver's mutex guards it.
type lru struct {
	size  int
	order *list.List // front: most recently used; values are *entry
	items map[key]*list.Element
}

type entry struct {
	k       key
	res     result
	expires time.Time
}

func newLRU(size int) *lru {
	return &lru{size: size, order: list.New(), items: make(map[key]*list.Element)}
}

func (c *lru) get(k key, now time.Time) (result, bool) {
	el, ok := c.items[k]
	if !ok {
		return result{}, false
	}
	e := el.Value.(*entry)
	if !now.Before(e.expires) {
		c.order.Remove(el)
		delete(c.items, k)
		return result{}, false
	}
	c.order.MoveToFront(el)
	return e.res, true
}

func (c *lru) put(k key, res result, expires time.Time) {
	if el, ok := c.items[k]; ok {
		e := el.Value.(*entry)
		e.res, e.expires = res, expires
		c.order.MoveToFront(el)
		return
	}
	c.items[k] = c.order.PushFront(&entry{k: k, res: res, expires: expires})
	for c.order.Len() > c.size {
		old := c.order.Back()
		c.order.Remove(old)
		delete(c.items, old.Value.(*entry).k)
	}
}

func (c *lru) len() int { return c.order.Len() }

func (c *lru) reset() {
	c.order.Init()
	clear(c.items)
}
