package main

func helperSum(a, b int) int {
	return a + b
}
