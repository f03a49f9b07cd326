/*
 * fuzz.h - what every libFuzzer target here shares.
 */
#ifndef FULCRUM_FUZZ_H
#define FULCRUM_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant: its failure stops the fuzzer with the input saved. */
#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			__builtin_trap();                                                          \
	} while (0)

#endif
