/* nbd/nbd_proto.c — decoders, encoders and the errno table of nbd_proto.h. */
#include "nbd/nbd_proto.h"

#include <errno.h>
#include <string.h>

int nbd_decode_option_hdr(const void *buf, size_t len, struct nbd_opt *out)
{
	const uint8_t *p = buf;

	if (len < sizeof(struct nbd_option_hdr))
		return -EINVAL;
	if (nbd_get64(p + offsetof(struct nbd_option_hdr, magic)) != NBD_IHAVEOPT)
		return -EPROTO;
	out->option = nbd_get32(p + offsetof(struct nbd_option_hdr, option));
	out->length = nbd_get32(p + offsetof(struct nbd_option_hdr, length));
	return 0;
}

int nbd_decode_request(const void *buf, size_t len, struct nbd_req_hdr *out)
{
	const uint8_t *p = buf;

	if (len < sizeof(struct nbd_request))
		return -EINVAL;
	if (nbd_get32(p + offsetof(struct nbd_request, magic)) != NBD_REQUEST_MAGIC)
		return -EPROTO;
	out->flags = nbd_get16(p + offsetof(struct nbd_request, flags));
	out->type = nbd_get16(p + offsetof(struct nbd_request, type));
	out->cookie = nbd_get64(p + offsetof(struct nbd_request, cookie));
	out->offset = nbd_get64(p + offsetof(struct nbd_request, offset));
	out->length = nbd_get32(p + offsetof(struct nbd_request, length));
	return 0;
}

/* Reads a u32-length-prefixed string at *pos; advances *pos. */
static int take_string(const uint8_t *p, size_t len, size_t *pos, const char **s, uint32_t *slen)
{
	uint32_t n;

	if (len - *pos < 4)
		return -EINVAL;
	n = nbd_get32(p + *pos);
	*pos += 4;
	if (n > NBD_MAX_NAME || n > len - *pos)
		return -EINVAL;
	*s = (const char *)p + *pos;
	*slen = n;
	*pos += n;
	return 0;
}

int nbd_decode_info_opt(const void *buf, size_t len, struct nbd_info_opt *out)
{
	const uint8_t *p = buf;
	size_t pos = 0;

	if (take_string(p, len, &pos, &out->name, &out->name_len) < 0 || len - pos < 2)
		return -EINVAL;
	out->nreqs = nbd_get16(p + pos);
	pos += 2;
	if (len - pos != (size_t)out->nreqs * 2)
		return -EINVAL;
	out->reqs = p + pos;
	return 0;
}

uint16_t nbd_info_opt_req(const struct nbd_info_opt *o, uint16_t i)
{
	return i < o->nreqs ? nbd_get16(o->reqs + (size_t)i * 2) : 0xffff;
}

int nbd_decode_meta_opt(const void *buf, size_t len, struct nbd_meta_opt *out)
{
	const uint8_t *p = buf;
	size_t pos = 0, start;

	if (take_string(p, len, &pos, &out->name, &out->name_len) < 0 || len - pos < 4)
		return -EINVAL;
	out->nqueries = nbd_get32(p + pos);
	pos += 4;
	start = pos;
	for (uint32_t i = 0; i < out->nqueries; i++) {
		const char *q;
		uint32_t qlen;

		if (take_string(p, len, &pos, &q, &qlen) < 0)
			return -EINVAL;
	}
	if (pos != len)
		return -EINVAL;
	out->queries = p + start;
	out->queries_len = len - start;
	return 0;
}

bool nbd_meta_opt_next(const struct nbd_meta_opt *o, size_t *pos, const char **q,
		       uint32_t *qlen)
{
	if (*pos >= o->queries_len)
		return false;
	return take_string(o->queries, o->queries_len, pos, q, qlen) == 0;
}

size_t nbd_encode_option_reply(uint8_t *buf, uint32_t option, uint32_t reply, uint32_t len)
{
	nbd_put64(buf + offsetof(struct nbd_option_reply_hdr, magic), NBD_REP_MAGIC);
	nbd_put32(buf + offsetof(struct nbd_option_reply_hdr, option), option);
	nbd_put32(buf + offsetof(struct nbd_option_reply_hdr, reply), reply);
	nbd_put32(buf + offsetof(struct nbd_option_reply_hdr, length), len);
	return sizeof(struct nbd_option_reply_hdr);
}

size_t nbd_encode_simple_reply(uint8_t *buf, uint32_t error, uint64_t cookie)
{
	nbd_put32(buf + offsetof(struct nbd_simple_reply, magic), NBD_SIMPLE_REPLY_MAGIC);
	nbd_put32(buf + offsetof(struct nbd_simple_reply, error), error);
	nbd_put64(buf + offsetof(struct nbd_simple_reply, cookie), cookie);
	return sizeof(struct nbd_simple_reply);
}

size_t nbd_encode_chunk(uint8_t *buf, uint16_t flags, uint16_t type, uint64_t cookie,
			uint32_t len)
{
	nbd_put32(buf + offsetof(struct nbd_structured_reply, magic), NBD_STRUCTURED_REPLY_MAGIC);
	nbd_put16(buf + offsetof(struct nbd_structured_reply, flags), flags);
	nbd_put16(buf + offsetof(struct nbd_structured_reply, type), type);
	nbd_put64(buf + offsetof(struct nbd_structured_reply, cookie), cookie);
	nbd_put32(buf + offsetof(struct nbd_structured_reply, length), len);
	return sizeof(struct nbd_structured_reply);
}

static const struct {
	int err;
	uint32_t wire;
} errno_table[] = {
	{ EPERM, NBD_EPERM },         { EROFS, NBD_EPERM },
	{ EIO, NBD_EIO },             { EILSEQ, NBD_EIO },
	{ ENOMEM, NBD_ENOMEM },
	{ EINVAL, NBD_EINVAL },       { ERANGE, NBD_EINVAL },
	{ ENOSPC, NBD_ENOSPC },       { EDQUOT, NBD_ENOSPC },     { EFBIG, NBD_ENOSPC },
	{ EOVERFLOW, NBD_EOVERFLOW },
	{ ENOTSUP, NBD_ENOTSUP },     { EOPNOTSUPP, NBD_ENOTSUP },
	{ ESHUTDOWN, NBD_ESHUTDOWN }, { EBADF, NBD_ESHUTDOWN },
};

uint32_t nbd_errno_to_wire(int err)
{
	if (err == 0)
		return NBD_SUCCESS;
	if (err < 0)
		err = -err;
	for (size_t i = 0; i < sizeof(errno_table) / sizeof(errno_table[0]); i++)
		if (errno_table[i].err == err)
			return errno_table[i].wire;
	return NBD_EIO;
}

const char *nbd_opt_name(uint32_t opt)
{
	static const char *const names[] = {
		[NBD_OPT_EXPORT_NAME] = "NBD_OPT_EXPORT_NAME",
		[NBD_OPT_ABORT] = "NBD_OPT_ABORT",
		[NBD_OPT_LIST] = "NBD_OPT_LIST",
		[NBD_OPT_PEEK_EXPORT] = "NBD_OPT_PEEK_EXPORT",
		[NBD_OPT_STARTTLS] = "NBD_OPT_STARTTLS",
		[NBD_OPT_INFO] = "NBD_OPT_INFO",
		[NBD_OPT_GO] = "NBD_OPT_GO",
		[NBD_OPT_STRUCTURED_REPLY] = "NBD_OPT_STRUCTURED_REPLY",
		[NBD_OPT_LIST_META_CONTEXT] = "NBD_OPT_LIST_META_CONTEXT",
		[NBD_OPT_SET_META_CONTEXT] = "NBD_OPT_SET_META_CONTEXT",
		[NBD_OPT_EXTENDED_HEADERS] = "NBD_OPT_EXTENDED_HEADERS",
	};

	return opt < sizeof(names) / sizeof(names[0]) && names[opt] ? names[opt] : "unknown";
}

const char *nbd_cmd_name(uint16_t cmd)
{
	static const char *const names[] = {
		[NBD_CMD_READ] = "NBD_CMD_READ",
		[NBD_CMD_WRITE] = "NBD_CMD_WRITE",
		[NBD_CMD_DISC] = "NBD_CMD_DISC",
		[NBD_CMD_FLUSH] = "NBD_CMD_FLUSH",
		[NBD_CMD_TRIM] = "NBD_CMD_TRIM",
		[NBD_CMD_CACHE] = "NBD_CMD_CACHE",
		[NBD_CMD_WRITE_ZEROES] = "NBD_CMD_WRITE_ZEROES",
		[NBD_CMD_BLOCK_STATUS] = "NBD_CMD_BLOCK_STATUS",
	};

	return cmd < sizeof(names) / sizeof(names[0]) && names[cmd] ? names[cmd] : "unknown";
}
