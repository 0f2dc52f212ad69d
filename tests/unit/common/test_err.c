/* tests/unit/common/test_err.c — error numbers as text. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "common/err.h"

Test(err, a_bad_checksum_reads_as_checksum_mismatch)
{
	cr_expect_str_eq(err_str(-EILSEQ), "checksum mismatch");
	cr_expect_str_eq(err_str(EILSEQ), "checksum mismatch");
	cr_expect_null(strstr(err_str(-EILSEQ), "multibyte"));
}

Test(err, other_errors_keep_the_c_library_text)
{
	cr_expect_str_eq(err_str(-ENOSPC), strerror(ENOSPC));
	cr_expect_str_eq(err_str(EIO), strerror(EIO));
}
