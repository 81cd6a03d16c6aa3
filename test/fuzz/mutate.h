/*
 * mutate.h — input generation for logagg-fuzz: a growable byte buffer, a
 * seeded PRNG, structure-aware record generation and byte-level mutation,
 * the hostile whole-message seeds, and the record-count bounds the
 * accounting oracle checks every message against.
 */
#ifndef FUZZ_MUTATE_H
#define FUZZ_MUTATE_H

#include <stddef.h>
#include <stdint.h>

typedef struct Buf
{
	char	   *data;
	size_t		len;
	size_t		cap;
} Buf;

void		buf_reserve(Buf *b, size_t extra);
void		buf_put(Buf *b, const void *p, size_t n);
void		buf_puts(Buf *b, const char *s);
void		buf_printf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void		buf_free(Buf *b);

typedef struct Rng
{
	uint64_t	s;
} Rng;

uint64_t	rng_next(Rng *r);
uint32_t	rng_below(Rng *r, uint32_t n);	/* 0 .. n-1 */
int			rng_chance(Rng *r, int percent);

/* Seeds: one record per line of every .ndjson file in the corpus, whole messages from
 * corpus/hostile/ (any bytes). */
int			seeds_load(const char *corpus_dir);
int			hostile_count(void);
const Buf  *hostile_get(int i, const char **name);

/* The big hostile messages are built in code (sizes follow max_bytes). */
int			special_count(void);
const char *special_build(int i, Buf *out, size_t max_bytes);

/* One mutated or generated record line (may contain any byte). */
void		gen_line(Rng *r, Buf *out);

/*
 * One message: lines joined by '\n', sometimes an array or a single value.
 * Returns the number of inputs it holds; never exceeds max_bytes.
 */
int			gen_message(Rng *r, Buf *out, size_t max_bytes, int hostile_permille);

/*
 * How many records (stored + rejected) the server must answer for this
 * message: non-blank lines one each, a line that may be an array 0..its
 * elements; a message without newline-separated records is one value.
 * *lo_counted is the lower bound on what a WebSocket client can count
 * (ack_count leaves out stored records that have a seq: a line that may
 * have one counts 0 there).
 */
void		count_bounds(const char *p, size_t len, int64_t *lo, int64_t *hi,
						 int64_t *lo_counted);

#endif
