/*
 * buf_rb.h - the red-black trees that index a vnode's buffers.
 *
 * This module owns one small intrusive red-black tree keyed by a logical
 * offset (off_t).  The kernel generates these with <sys/tree.h> macros
 * (RB_PROTOTYPE2(buf_rb_tree, ...) and buf_rb_hash); glibc has no such
 * header, so here it is as plain functions over an embedded node.  A struct
 * buf carries two nodes: b_rbhash (v_rbhash_tree, every buffer of the vnode)
 * and b_rbnode (v_rbclean_tree or v_rbdirty_tree).
 *
 * Locking: none here.  The vnode's v_token protects its trees.
 */
#ifndef FLYFS_CACHE_BUF_RB_H
#define FLYFS_CACHE_BUF_RB_H

#include <stddef.h>
#include <sys/types.h>

struct buf_rb_node {
	struct buf_rb_node	*rbn_left;
	struct buf_rb_node	*rbn_right;
	struct buf_rb_node	*rbn_parent;
	int			rbn_red;
	off_t			rbn_key;	/* the buffer's loffset */
};

struct buf_rb_tree {
	struct buf_rb_node	*rbt_root;
	long			rbt_count;	/* number of nodes */
};

#define BUF_RB_INITIALIZER	{ NULL, 0 }

static inline void
buf_rb_init(struct buf_rb_tree *t)
{
	t->rbt_root = NULL;
	t->rbt_count = 0;
}

/* Insert N keyed by KEY; returns the existing node on collision, else NULL. */
struct buf_rb_node *buf_rb_insert(struct buf_rb_tree *t, struct buf_rb_node *n,
	    off_t key);
void	buf_rb_remove(struct buf_rb_tree *t, struct buf_rb_node *n);
struct buf_rb_node *buf_rb_lookup(const struct buf_rb_tree *t, off_t key);
/* First node with key >= KEY (RB_NFIND), or NULL. */
struct buf_rb_node *buf_rb_nfind(const struct buf_rb_tree *t, off_t key);
struct buf_rb_node *buf_rb_first(const struct buf_rb_tree *t);
struct buf_rb_node *buf_rb_last(const struct buf_rb_tree *t);
struct buf_rb_node *buf_rb_next(const struct buf_rb_node *n);
struct buf_rb_node *buf_rb_prev(const struct buf_rb_node *n);

/* Black height if T is a valid red-black tree, else -1 (tests, asserts). */
int	buf_rb_check(const struct buf_rb_tree *t);

#define buf_rb_entry(node, field)					\
	((node) == NULL ? NULL :					\
	 (struct buf *)((char *)(node) - offsetof(struct buf, field)))

#endif /* FLYFS_CACHE_BUF_RB_H */
