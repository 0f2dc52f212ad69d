/* common/err.c — see err.h. */
#include "common/err.h"

#include <errno.h>
#include <string.h>

const char *err_str(int err)
{
	if (err < 0)
		err = -err;
	switch (err) {
	case EILSEQ:
		return "checksum mismatch";
	default:
		return strerror(err);
	}
}
