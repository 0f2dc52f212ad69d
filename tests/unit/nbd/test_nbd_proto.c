/* tests/unit/nbd/test_nbd_proto.c — the NBD wire decoders, encoders and errno table. */
#include "nbd/nbd_proto.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

static size_t put_string(uint8_t *p, const char *s)
{
	size_t n = strlen(s);

	nbd_put32(p, (uint32_t)n);
	memcpy(p + 4, s, n);
	return 4 + n;
}

Test(nbd_proto, request_decodes_big_endian_fields)
{
	uint8_t b[28];
	struct nbd_req_hdr h;

	nbd_put32(b, NBD_REQUEST_MAGIC);
	nbd_put16(b + 4, NBD_CMD_FLAG_FUA);
	nbd_put16(b + 6, NBD_CMD_WRITE);
	nbd_put64(b + 8, 0x0102030405060708ull);
	nbd_put64(b + 16, 1ull << 40);
	nbd_put32(b + 24, 4097);
	cr_assert_eq(nbd_decode_request(b, sizeof(b), &h), 0);
	cr_assert_eq(h.flags, NBD_CMD_FLAG_FUA);
	cr_assert_eq(h.type, NBD_CMD_WRITE);
	cr_assert_eq(h.cookie, 0x0102030405060708ull);
	cr_assert_eq(h.offset, 1ull << 40);
	cr_assert_eq(h.length, 4097);
}

Test(nbd_proto, request_with_wrong_magic_or_short_is_refused)
{
	uint8_t b[28] = { 0 };
	struct nbd_req_hdr h;

	cr_assert_eq(nbd_decode_request(b, sizeof(b), &h), -EPROTO);
	nbd_put32(b, NBD_REQUEST_MAGIC);
	cr_assert_eq(nbd_decode_request(b, 27, &h), -EINVAL);
}

Test(nbd_proto, option_header_checks_magic)
{
	uint8_t b[16];
	struct nbd_opt o;

	nbd_put64(b, NBD_IHAVEOPT);
	nbd_put32(b + 8, NBD_OPT_GO);
	nbd_put32(b + 12, 77);
	cr_assert_eq(nbd_decode_option_hdr(b, sizeof(b), &o), 0);
	cr_assert_eq(o.option, NBD_OPT_GO);
	cr_assert_eq(o.length, 77);
	b[0] ^= 1;
	cr_assert_eq(nbd_decode_option_hdr(b, sizeof(b), &o), -EPROTO);
}

Test(nbd_proto, info_option_needs_exact_length)
{
	uint8_t b[64];
	size_t n = put_string(b, "vol");
	struct nbd_info_opt io;

	nbd_put16(b + n, 2);
	nbd_put16(b + n + 2, NBD_INFO_NAME);
	nbd_put16(b + n + 4, NBD_INFO_BLOCK_SIZE);
	cr_assert_eq(nbd_decode_info_opt(b, n + 6, &io), 0);
	cr_assert_eq(io.name_len, 3);
	cr_assert_eq(memcmp(io.name, "vol", 3), 0);
	cr_assert_eq(io.nreqs, 2);
	cr_assert_eq(nbd_info_opt_req(&io, 1), NBD_INFO_BLOCK_SIZE);
	cr_assert_eq(nbd_decode_info_opt(b, n + 5, &io), -EINVAL);
	cr_assert_eq(nbd_decode_info_opt(b, n + 7, &io), -EINVAL);
	nbd_put32(b, 1000); /* name longer than the data */
	cr_assert_eq(nbd_decode_info_opt(b, n + 6, &io), -EINVAL);
	cr_assert_eq(nbd_decode_info_opt(b, 3, &io), -EINVAL);
}

Test(nbd_proto, meta_option_iterates_queries)
{
	uint8_t b[128];
	size_t n = put_string(b, "vol"), pos = 0;
	struct nbd_meta_opt mo;
	const char *q;
	uint32_t qlen;

	nbd_put32(b + n, 2);
	n += 4;
	n += put_string(b + n, "base:allocation");
	n += put_string(b + n, "x-foo:");
	cr_assert_eq(nbd_decode_meta_opt(b, n, &mo), 0);
	cr_assert_eq(mo.nqueries, 2);
	cr_assert(nbd_meta_opt_next(&mo, &pos, &q, &qlen));
	cr_assert_eq(qlen, 15);
	cr_assert_eq(memcmp(q, "base:allocation", 15), 0);
	cr_assert(nbd_meta_opt_next(&mo, &pos, &q, &qlen));
	cr_assert_eq(qlen, 6);
	cr_assert_not(nbd_meta_opt_next(&mo, &pos, &q, &qlen));
	cr_assert_eq(nbd_decode_meta_opt(b, n - 1, &mo), -EINVAL);
	cr_assert_eq(nbd_decode_meta_opt(b, n + 1, &mo), -EINVAL);
}

Test(nbd_proto, meta_option_with_too_many_queries_is_refused)
{
	uint8_t b[32];
	size_t n = put_string(b, "v");
	struct nbd_meta_opt mo;

	nbd_put32(b + n, 0xffffffffu);
	cr_assert_eq(nbd_decode_meta_opt(b, n + 4, &mo), -EINVAL);
}

Test(nbd_proto, encoders_write_the_documented_layouts)
{
	uint8_t b[32];

	cr_assert_eq(nbd_encode_option_reply(b, NBD_OPT_LIST, NBD_REP_ERR_UNSUP, 9), 20);
	cr_assert_eq(nbd_get64(b), NBD_REP_MAGIC);
	cr_assert_eq(nbd_get32(b + 12), NBD_REP_ERR_UNSUP);
	cr_assert_eq(nbd_get32(b + 16), 9);
	cr_assert_eq(nbd_encode_simple_reply(b, NBD_EINVAL, 7), 16);
	cr_assert_eq(nbd_get32(b), NBD_SIMPLE_REPLY_MAGIC);
	cr_assert_eq(nbd_get32(b + 4), NBD_EINVAL);
	cr_assert_eq(nbd_get64(b + 8), 7);
	cr_assert_eq(nbd_encode_chunk(b, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, 5, 6), 20);
	cr_assert_eq(nbd_get32(b), NBD_STRUCTURED_REPLY_MAGIC);
	cr_assert_eq(nbd_get16(b + 4), NBD_REPLY_FLAG_DONE);
	cr_assert_eq(nbd_get16(b + 6), NBD_REPLY_TYPE_ERROR);
	cr_assert_eq(nbd_get32(b + 16), 6);
}

Test(nbd_proto, errno_table_maps_engine_errors)
{
	cr_assert_eq(nbd_errno_to_wire(0), NBD_SUCCESS);
	cr_assert_eq(nbd_errno_to_wire(-EPERM), NBD_EPERM);
	cr_assert_eq(nbd_errno_to_wire(-EIO), NBD_EIO);
	cr_assert_eq(nbd_errno_to_wire(-EILSEQ), NBD_EIO);
	cr_assert_eq(nbd_errno_to_wire(-ENOMEM), NBD_ENOMEM);
	cr_assert_eq(nbd_errno_to_wire(-EINVAL), NBD_EINVAL);
	cr_assert_eq(nbd_errno_to_wire(-ERANGE), NBD_EINVAL);
	cr_assert_eq(nbd_errno_to_wire(-ENOSPC), NBD_ENOSPC);
	cr_assert_eq(nbd_errno_to_wire(-EOVERFLOW), NBD_EOVERFLOW);
	cr_assert_eq(nbd_errno_to_wire(-ESHUTDOWN), NBD_ESHUTDOWN);
	cr_assert_eq(nbd_errno_to_wire(-ENOTSUP), NBD_ENOTSUP);
	cr_assert_eq(nbd_errno_to_wire(EIO), NBD_EIO);
	cr_assert_eq(nbd_errno_to_wire(-ENOENT), NBD_EIO);
}

Test(nbd_proto, names_for_logs)
{
	cr_assert_str_eq(nbd_opt_name(NBD_OPT_GO), "NBD_OPT_GO");
	cr_assert_str_eq(nbd_opt_name(12345), "unknown");
	cr_assert_str_eq(nbd_cmd_name(NBD_CMD_BLOCK_STATUS), "NBD_CMD_BLOCK_STATUS");
	cr_assert_str_eq(nbd_cmd_name(999), "unknown");
}
