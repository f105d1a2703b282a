package main

import (
	"fmt"

	"example.com/goproj/internal/store"
)

func main() {
	s := store.New()
	s.Put("a", helperSum(1, 2))
	fmt.Println(store.MaxItems)
}
