/*
 * glob.h — Redis-style glob matching (KEYS, SCAN MATCH, ACL key patterns): '*' any run, '?' any
 * byte, '[abc]' '[^abc]' '[a-z]' classes, '\x' a literal x. Binary-safe, iterative (one saved
 * backtrack point for the last '*', so no recursion and linear-ish time). THREAD: any.
 */
#ifndef SLUICE_GLOB_H
#define SLUICE_GLOB_H

#include <stddef.h>
#include <stdint.h>

/* Matches one class starting after '[' at pattern[*pi]; advances *pi past the closing ']'. */
static inline int glob_class_matches(const uint8_t *pattern, size_t plen, size_t *pi, uint8_t c) {
  size_t i = *pi;
  int negate = 0, matched = 0;
  if (i < plen && pattern[i] == '^') {
    negate = 1;
    i++;
  }
  for (;;) {
    if (i >= plen) break; /* an unterminated class ends with the pattern */
    if (pattern[i] == ']') {
      i++;
      break;
    }
    if (pattern[i] == '\\' && i + 1 < plen) {
      if (pattern[i + 1] == c) matched = 1;
      i += 2;
    } else if (i + 2 < plen && pattern[i + 1] == '-') {
      uint8_t lo = pattern[i], hi = pattern[i + 2];
      if (lo > hi) {
        uint8_t t = lo;
        lo = hi;
        hi = t;
      }
      if (c >= lo && c <= hi) matched = 1;
      i += 3;
    } else {
      if (pattern[i] == c) matched = 1;
      i++;
    }
  }
  *pi = i;
  return negate ? !matched : matched;
}

static inline int glob_matches(const uint8_t *pattern, size_t plen, const uint8_t *text, size_t tlen) {
  size_t p = 0, t = 0;
  size_t star_p = (size_t)-1, star_t = 0;
  while (t < tlen) {
    if (p < plen) {
      uint8_t pc = pattern[p];
      if (pc == '*') {
        while (p < plen && pattern[p] == '*') p++;
        if (p == plen) return 1;
        star_p = p;
        star_t = t;
        continue;
      }
      if (pc == '?') {
        p++;
        t++;
        continue;
      }
      if (pc == '[') {
        size_t q = p + 1;
        if (glob_class_matches(pattern, plen, &q, text[t])) {
          p = q;
          t++;
          continue;
        }
      } else {
        if (pc == '\\' && p + 1 < plen) pc = pattern[++p];
        if (pc == text[t]) {
          p++;
          t++;
          continue;
        }
      }
    }
    if (star_p == (size_t)-1) return 0;
    /* Backtrack: let the last '*' swallow one more byte. */
    p = star_p;
    t = ++star_t;
  }
  while (p < plen && pattern[p] == '*') p++;
  return p == plen;
}

#endif /* SLUICE_GLOB_H */
