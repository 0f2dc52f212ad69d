/* common/err.h — the text of an error number, for logs, control answers and the CLI.
 *
 * strerror() with quill's meanings where the C library's text would mislead: a bad
 * checksum is -EILSEQ everywhere in quill, which strerror() calls "Invalid or
 * incomplete multibyte or wide character". Every place that turns an errno into text
 * goes through here.
 */
#ifndef QUILL_COMMON_ERR_H
#define QUILL_COMMON_ERR_H

/* err may be an errno or a -errno; the text is static (or strerror's). */
const char *err_str(int err);

#endif
