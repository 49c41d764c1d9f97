/*
 * buf_rb.c - intrusive red-black tree keyed by off_t (see buf_rb.h).
 *
 * Classic red-black tree with parent pointers: insertion and deletion
 * rebalance with at most three rotations; lookups are O(log n).  The
 * invariants (root black, no red node with a red child, equal black height
 * on every path) are checked by buf_rb_check(), for tests and assertions.
 */
#include "cache/buf_rb.h"
#include "cache/kern_synch.h"

#define RED	1
#define BLACK	0

static inline int
is_red(const struct buf_rb_node *n)
{
	return n != NULL && n->rbn_red;
}

static void
rotate_left(struct buf_rb_tree *t, struct buf_rb_node *x)
{
	struct buf_rb_node *y = x->rbn_right;

	x->rbn_right = y->rbn_left;
	if (y->rbn_left)
		y->rbn_left->rbn_parent = x;
	y->rbn_parent = x->rbn_parent;
	if (x->rbn_parent == NULL)
		t->rbt_root = y;
	else if (x == x->rbn_parent->rbn_left)
		x->rbn_parent->rbn_left = y;
	else
		x->rbn_parent->rbn_right = y;
	y->rbn_left = x;
	x->rbn_parent = y;
}

static void
rotate_right(struct buf_rb_tree *t, struct buf_rb_node *x)
{
	struct buf_rb_node *y = x->rbn_left;

	x->rbn_left = y->rbn_right;
	if (y->rbn_right)
		y->rbn_right->rbn_parent = x;
	y->rbn_parent = x->rbn_parent;
	if (x->rbn_parent == NULL)
		t->rbt_root = y;
	else if (x == x->rbn_parent->rbn_right)
		x->rbn_parent->rbn_right = y;
	else
		x->rbn_parent->rbn_left = y;
	y->rbn_right = x;
	x->rbn_parent = y;
}

struct buf_rb_node *
buf_rb_insert(struct buf_rb_tree *t, struct buf_rb_node *n, off_t key)
{
	struct buf_rb_node *p = NULL, **link = &t->rbt_root;
	struct buf_rb_node *g, *u;

	while (*link) {
		p = *link;
		if (key < p->rbn_key)
			link = &p->rbn_left;
		else if (key > p->rbn_key)
			link = &p->rbn_right;
		else
			return p;
	}
	n->rbn_key = key;
	n->rbn_left = n->rbn_right = NULL;
	n->rbn_parent = p;
	n->rbn_red = RED;
	*link = n;
	t->rbt_count++;

	while (is_red(n->rbn_parent)) {
		p = n->rbn_parent;
		g = p->rbn_parent;
		if (p == g->rbn_left) {
			u = g->rbn_right;
			if (is_red(u)) {
				p->rbn_red = u->rbn_red = BLACK;
				g->rbn_red = RED;
				n = g;
				continue;
			}
			if (n == p->rbn_right) {
				rotate_left(t, p);
				n = p;
				p = n->rbn_parent;
			}
			p->rbn_red = BLACK;
			g->rbn_red = RED;
			rotate_right(t, g);
		} else {
			u = g->rbn_left;
			if (is_red(u)) {
				p->rbn_red = u->rbn_red = BLACK;
				g->rbn_red = RED;
				n = g;
				continue;
			}
			if (n == p->rbn_left) {
				rotate_right(t, p);
				n = p;
				p = n->rbn_parent;
			}
			p->rbn_red = BLACK;
			g->rbn_red = RED;
			rotate_left(t, g);
		}
	}
	t->rbt_root->rbn_red = BLACK;
	return NULL;
}

/* Put V in U's place (U's subtrees are the caller's business). */
static void
transplant(struct buf_rb_tree *t, struct buf_rb_node *u, struct buf_rb_node *v)
{
	if (u->rbn_parent == NULL)
		t->rbt_root = v;
	else if (u == u->rbn_parent->rbn_left)
		u->rbn_parent->rbn_left = v;
	else
		u->rbn_parent->rbn_right = v;
	if (v)
		v->rbn_parent = u->rbn_parent;
}

void
buf_rb_remove(struct buf_rb_tree *t, struct buf_rb_node *z)
{
	struct buf_rb_node *x, *xp, *y, *w;
	int y_red;

	y = z;
	y_red = y->rbn_red;
	if (z->rbn_left == NULL) {
		x = z->rbn_right;
		xp = z->rbn_parent;
		transplant(t, z, x);
	} else if (z->rbn_right == NULL) {
		x = z->rbn_left;
		xp = z->rbn_parent;
		transplant(t, z, x);
	} else {
		y = z->rbn_right;
		while (y->rbn_left)
			y = y->rbn_left;
		y_red = y->rbn_red;
		x = y->rbn_right;
		if (y->rbn_parent == z) {
			xp = y;
		} else {
			xp = y->rbn_parent;
			transplant(t, y, x);
			y->rbn_right = z->rbn_right;
			y->rbn_right->rbn_parent = y;
		}
		transplant(t, z, y);
		y->rbn_left = z->rbn_left;
		y->rbn_left->rbn_parent = y;
		y->rbn_red = z->rbn_red;
	}
	t->rbt_count--;
	z->rbn_left = z->rbn_right = z->rbn_parent = NULL;
	if (y_red)
		return;

	/* X carries an extra black; push it up until it can be absorbed. */
	while (x != t->rbt_root && !is_red(x)) {
		if (x == xp->rbn_left) {
			w = xp->rbn_right;
			if (is_red(w)) {
				w->rbn_red = BLACK;
				xp->rbn_red = RED;
				rotate_left(t, xp);
				w = xp->rbn_right;
			}
			if (!is_red(w->rbn_left) && !is_red(w->rbn_right)) {
				w->rbn_red = RED;
				x = xp;
				xp = x->rbn_parent;
			} else {
				if (!is_red(w->rbn_right)) {
					w->rbn_left->rbn_red = BLACK;
					w->rbn_red = RED;
					rotate_right(t, w);
					w = xp->rbn_right;
				}
				w->rbn_red = xp->rbn_red;
				xp->rbn_red = BLACK;
				if (w->rbn_right)
					w->rbn_right->rbn_red = BLACK;
				rotate_left(t, xp);
				x = t->rbt_root;
				break;
			}
		} else {
			w = xp->rbn_left;
			if (is_red(w)) {
				w->rbn_red = BLACK;
				xp->rbn_red = RED;
				rotate_right(t, xp);
				w = xp->rbn_left;
			}
			if (!is_red(w->rbn_left) && !is_red(w->rbn_right)) {
				w->rbn_red = RED;
				x = xp;
				xp = x->rbn_parent;
			} else {
				if (!is_red(w->rbn_left)) {
					w->rbn_right->rbn_red = BLACK;
					w->rbn_red = RED;
					rotate_left(t, w);
					w = xp->rbn_left;
				}
				w->rbn_red = xp->rbn_red;
				xp->rbn_red = BLACK;
				if (w->rbn_left)
					w->rbn_left->rbn_red = BLACK;
				rotate_right(t, xp);
				x = t->rbt_root;
				break;
			}
		}
	}
	if (x)
		x->rbn_red = BLACK;
}

struct buf_rb_node *
buf_rb_lookup(const struct buf_rb_tree *t, off_t key)
{
	struct buf_rb_node *n = t->rbt_root;

	while (n) {
		if (key < n->rbn_key)
			n = n->rbn_left;
		else if (key > n->rbn_key)
			n = n->rbn_right;
		else
			return n;
	}
	return NULL;
}

struct buf_rb_node *
buf_rb_nfind(const struct buf_rb_tree *t, off_t key)
{
	struct buf_rb_node *n = t->rbt_root, *best = NULL;

	while (n) {
		if (key <= n->rbn_key) {
			best = n;
			if (key == n->rbn_key)
				break;
			n = n->rbn_left;
		} else {
			n = n->rbn_right;
		}
	}
	return best;
}

struct buf_rb_node *
buf_rb_first(const struct buf_rb_tree *t)
{
	struct buf_rb_node *n = t->rbt_root;

	while (n && n->rbn_left)
		n = n->rbn_left;
	return n;
}

struct buf_rb_node *
buf_rb_last(const struct buf_rb_tree *t)
{
	struct buf_rb_node *n = t->rbt_root;

	while (n && n->rbn_right)
		n = n->rbn_right;
	return n;
}

struct buf_rb_node *
buf_rb_next(const struct buf_rb_node *n)
{
	const struct buf_rb_node *p;

	if (n->rbn_right) {
		n = n->rbn_right;
		while (n->rbn_left)
			n = n->rbn_left;
		return (struct buf_rb_node *)n;
	}
	p = n->rbn_parent;
	while (p && n == p->rbn_right) {
		n = p;
		p = p->rbn_parent;
	}
	return (struct buf_rb_node *)p;
}

struct buf_rb_node *
buf_rb_prev(const struct buf_rb_node *n)
{
	const struct buf_rb_node *p;

	if (n->rbn_left) {
		n = n->rbn_left;
		while (n->rbn_right)
			n = n->rbn_right;
		return (struct buf_rb_node *)n;
	}
	p = n->rbn_parent;
	while (p && n == p->rbn_left) {
		n = p;
		p = p->rbn_parent;
	}
	return (struct buf_rb_node *)p;
}

static int
check_subtree(const struct buf_rb_node *n, const struct buf_rb_node *parent,
    long *count)
{
	int lh, rh;

	if (n == NULL)
		return 1;
	(*count)++;
	if (n->rbn_parent != parent)
		return -1;
	if (n->rbn_red && (is_red(n->rbn_left) || is_red(n->rbn_right)))
		return -1;
	if (n->rbn_left && n->rbn_left->rbn_key >= n->rbn_key)
		return -1;
	if (n->rbn_right && n->rbn_right->rbn_key <= n->rbn_key)
		return -1;
	lh = check_subtree(n->rbn_left, n, count);
	rh = check_subtree(n->rbn_right, n, count);
	if (lh < 0 || rh < 0 || lh != rh)
		return -1;
	return lh + (n->rbn_red ? 0 : 1);
}

int
buf_rb_check(const struct buf_rb_tree *t)
{
	long count = 0;
	int h;

	if (is_red(t->rbt_root))
		return -1;
	h = check_subtree(t->rbt_root, NULL, &count);
	if (count != t->rbt_count)
		return -1;
	return h;
}
