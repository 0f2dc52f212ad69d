/* replication/layerread.c — the reading side of LAYER_READ (layerread.h). */
#include "replication/layerread.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "replication/peer.h"
#include "replication/peer_proto.h"

#define LOG_TAG "layerread"

struct layer_read {
	uint64_t uid, layer, lba;
	uint32_t nblocks;
	void *buf;
	layer_read_cb cb;
	void *arg;
};

/* What the reply says: 0 with the blocks in lr->buf, or why not. */
static int reply_result(struct layer_read *lr, const void *payload, size_t len)
{
	struct peer_seg_reply rep;

	if (peer_seg_reply_decode(PEER_OP_LAYER_READ, payload, len, &rep) < 0)
		return -EPROTO;
	if (rep.result < 0)
		return rep.result;
	if (rep.nblocks != lr->nblocks)
		return -EPROTO; /* it answered another read than we asked */
	if (peer_layer_read_check(&rep) < 0) {
		LOG_RATELIMITED(LOG_ERROR, LOG_TAG, "family %llx, snapshot layer %llu, lba %llu "
				"(%u blocks): a block arrived that fails its checksum: not used",
				(unsigned long long)lr->uid, (unsigned long long)lr->layer,
				(unsigned long long)lr->lba, lr->nblocks);
		return -EILSEQ;
	}
	memcpy(lr->buf, rep.data, (size_t)lr->nblocks * PEER_SEG_BLOCK);
	return 0;
}

static void replied(void *arg, int res, const struct peer_hdr *h, const void *payload,
		    size_t len)
{
	struct layer_read *lr = arg;
	layer_read_cb cb = lr->cb;
	void *cb_arg = lr->arg;

	(void)h;
	if (res == 0)
		res = reply_result(lr, payload, len);
	free(lr);
	cb(cb_arg, res);
}

int layer_read(struct peer_conn *c, uint64_t uid, uint64_t layer, uint64_t lba,
	       uint32_t nblocks, void *buf, unsigned timeout_ms, layer_read_cb cb, void *arg)
{
	struct peer_seg_req rq = { .op = PEER_OP_LAYER_READ, .layer = layer, .lba = lba,
				   .nblocks = nblocks };
	uint8_t head[PEER_SEG_HEAD_MAX];
	struct peer_msg m = { .op = PEER_OP_LAYER_READ, .volume_id = uid, .head = head };
	struct layer_read *lr;
	int r;

	if (!c || !buf || !cb || uid == 0 || layer == 0 || nblocks == 0 ||
	    nblocks > PEER_LAYER_READ_MAX_BLOCKS || lba > UINT64_MAX - nblocks)
		return -EINVAL;
	lr = malloc(sizeof(*lr));
	if (!lr)
		return -ENOMEM;
	*lr = (struct layer_read){ .uid = uid, .layer = layer, .lba = lba, .nblocks = nblocks,
				   .buf = buf, .cb = cb, .arg = arg };
	m.head_len = peer_seg_req_encode(&rq, head);
	r = peer_request(c, &m, timeout_ms, replied, lr);
	if (r < 0)
		free(lr);
	return r;
}

struct layer_find {
	layer_find_cb cb;
	void *arg;
};

static void found(void *arg, int res, const struct peer_hdr *h, const void *payload,
		  size_t len)
{
	struct layer_find *lf = arg;
	struct peer_seg_reply rep = { 0 };

	(void)h;
	if (res == 0)
		res = peer_seg_reply_decode(PEER_OP_LAYER_FIND, payload, len, &rep) < 0
			      ? -EPROTO : rep.result;
	if (res < 0)
		rep = (struct peer_seg_reply){ 0 };
	lf->cb(lf->arg, res, rep.family, rep.layer, rep.blocks);
	free(lf);
}

int layer_find(struct peer_conn *c, const char *volume, const char *snap, unsigned timeout_ms,
	       layer_find_cb cb, void *arg)
{
	struct peer_seg_req rq = { .op = PEER_OP_LAYER_FIND };
	uint8_t head[sizeof(struct peer_layer_find)];
	struct peer_msg m = { .op = PEER_OP_LAYER_FIND, .head = head };
	struct layer_find *lf;
	int r;

	if (!c || !cb || !volume || !snap || !volume[0] || !snap[0] ||
	    strlen(volume) >= PEER_LAYER_NAME || strlen(snap) >= PEER_LAYER_NAME)
		return -EINVAL;
	lf = malloc(sizeof(*lf));
	if (!lf)
		return -ENOMEM;
	*lf = (struct layer_find){ .cb = cb, .arg = arg };
	memcpy(rq.volume, volume, strlen(volume) + 1);
	memcpy(rq.snap, snap, strlen(snap) + 1);
	m.head_len = peer_seg_req_encode(&rq, head);
	r = peer_request(c, &m, timeout_ms, found, lf);
	if (r < 0)
		free(lf);
	return r;
}
