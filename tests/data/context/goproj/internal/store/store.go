package store

// Store keeps items.
type Store struct {
	items map[string]int
}

// New makes an empty Store.
func New() *Store {
	return &Store{items: map[string]int{}}
}

// Put saves an item.
func (s *Store) Put(key string, v int) {
	s.items[key] = v
}

const MaxItems = 100
