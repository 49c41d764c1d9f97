/*
 * check_synch.c - the sleep/wakeup primitives, the buffer lock, the
 * red-black index and the stats registry of cache/.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/buf.h"
#include "cache/bufstats.h"

static int chan;
static volatile int flag;

static void *
sleeper(void *arg)
{
	long r;

	(void)arg;
	r = tsleep(&chan, 0, "tstslp", 5000);
	__atomic_store_n(&flag, 1, __ATOMIC_SEQ_CST);
	return (void *)r;
}

static int
nsleepers(void)
{
	static FILE *devnull;

	if (devnull == NULL)
		devnull = fopen("/dev/null", "w");
	return tsleep_dump(devnull);
}

static void
wait_sleeping(int n)
{
	int i;

	for (i = 0; i < 5000 && nsleepers() < n; i++)
		usleep(1000);
}

START_TEST(test_tsleep_timeout)
{
	long t0 = ticks_now();

	ck_assert_int_eq(tsleep(&chan, 0, "tmo", 50), EWOULDBLOCK);
	ck_assert_int_ge(ticks_now() - t0, 45);
}
END_TEST

START_TEST(test_wakeup)
{
	pthread_t td;
	void *r;

	pthread_create(&td, NULL, sleeper, NULL);
	wait_sleeping(1);
	ck_assert_int_eq(__atomic_load_n(&flag, __ATOMIC_SEQ_CST), 0);
	wakeup(&chan);
	pthread_join(td, &r);
	ck_assert_int_eq((long)r, 0);
}
END_TEST

START_TEST(test_interlock_not_lost)
{
	long t0 = ticks_now();

	/* A wakeup between the interlock and the sleep must not be lost. */
	tsleep_interlock(&chan, 0);
	wakeup(&chan);
	ck_assert_int_eq(tsleep(&chan, PINTERLOCKED, "intlk", 2000), 0);
	ck_assert_int_lt(ticks_now() - t0, 1000);
	/* Without interlock the earlier wakeup is forgotten. */
	ck_assert_int_eq(tsleep(&chan, 0, "intlk2", 20), EWOULDBLOCK);
}
END_TEST

START_TEST(test_wakeup_one)
{
	pthread_t t1, t2;
	void *r;

	pthread_create(&t1, NULL, sleeper, NULL);
	pthread_create(&t2, NULL, sleeper, NULL);
	wait_sleeping(2);
	wakeup_one(&chan);
	usleep(50000);
	ck_assert_int_eq(nsleepers(), 1);
	wakeup_one(&chan);
	pthread_join(t1, &r);
	pthread_join(t2, &r);
}
END_TEST

static struct buf lbuf;

static void *
unlocker(void *arg)
{
	(void)arg;
	usleep(20000);
	BUF_UNLOCK(&lbuf);		/* not the owner: allowed after KERNPROC */
	return NULL;
}

START_TEST(test_buf_kernproc)
{
	pthread_t td;

	BUF_LOCKINIT(&lbuf);
	ck_assert_int_eq(BUF_LOCK(&lbuf, LK_EXCLUSIVE), 0);
	ck_assert(BUF_LOCKINUSE(&lbuf));
	ck_assert_int_eq(BUF_REFCNT(&lbuf), 1);
	ck_assert_int_eq(BUF_LOCK(&lbuf, LK_EXCLUSIVE | LK_NOWAIT), EBUSY);
	BUF_KERNPROC(&lbuf);
	pthread_create(&td, NULL, unlocker, NULL);
	/* Blocks until the other thread releases the handed-off lock. */
	ck_assert_int_eq(BUF_LOCK(&lbuf, LK_EXCLUSIVE), 0);
	pthread_join(td, NULL);
	BUF_UNLOCK(&lbuf);
	ck_assert(!BUF_LOCKINUSE(&lbuf));
}
END_TEST

START_TEST(test_buf_timelock)
{
	pthread_t td;

	BUF_LOCKINIT(&lbuf);
	BUF_LOCK(&lbuf, LK_EXCLUSIVE);
	ck_assert_int_eq(BUF_TIMELOCK(&lbuf, LK_EXCLUSIVE, "tlk", 30),
	    EWOULDBLOCK);
	BUF_KERNPROC(&lbuf);
	pthread_create(&td, NULL, unlocker, NULL);
	ck_assert_int_eq(BUF_TIMELOCK(&lbuf, LK_EXCLUSIVE | LK_SLEEPFAIL,
	    "tlk", 2000), ENOLCK);
	pthread_join(td, NULL);
	ck_assert(!BUF_LOCKINUSE(&lbuf));
}
END_TEST

#ifdef INVARIANTS
/*
 * The lost-wakeup race of the buffer lock, forced with its INVARIANTS
 * hook.  Waiter B reads the state (locked, with sleeper C recorded in
 * BL_WAITERS) and is held there.  The holder unlocks, waking C, which
 * takes the lock and frees it again without a wakeup, as nobody else has
 * recorded a wait.  Only then does B interlock.  B must see that the
 * state it read is gone and take the free lock, not sleep on it.  (Seen
 * once as an integration-test hang: a reader asleep in "getblk" on an
 * unlocked buffer.)
 */
static __thread bool hk_mine;
static sem_t hk_in, hk_go;

static void
hold_waiter(struct buflock *bl)
{
	(void)bl;
	if (!hk_mine)
		return;
	hk_mine = false;
	sem_post(&hk_in);
	sem_wait(&hk_go);
}

static void *
waiter_c(void *arg)
{
	(void)arg;
	BUF_LOCK(&lbuf, LK_EXCLUSIVE);
	BUF_UNLOCK(&lbuf);
	return NULL;
}

static void *
waiter_b(void *arg)
{
	long r;

	(void)arg;
	hk_mine = true;
	r = BUF_TIMELOCK(&lbuf, LK_EXCLUSIVE, "tlk", 2000);
	if (r == 0)
		BUF_UNLOCK(&lbuf);
	return (void *)r;
}

START_TEST(test_buf_lock_no_lost_wakeup)
{
	pthread_t b, c;
	void *r;

	sem_init(&hk_in, 0, 0);
	sem_init(&hk_go, 0, 0);
	buf_lock_test_hook = hold_waiter;
	BUF_LOCKINIT(&lbuf);
	BUF_LOCK(&lbuf, LK_EXCLUSIVE);
	pthread_create(&c, NULL, waiter_c, NULL);
	wait_sleeping(1);
	ck_assert_int_eq(nsleepers(), 1);
	pthread_create(&b, NULL, waiter_b, NULL);
	sem_wait(&hk_in);		/* B has read LOCKED | WAITERS */
	BUF_UNLOCK(&lbuf);		/* wakes C only */
	pthread_join(c, NULL);		/* C locked and unlocked: free */
	ck_assert(!BUF_LOCKINUSE(&lbuf));
	sem_post(&hk_go);
	pthread_join(b, &r);
	buf_lock_test_hook = NULL;
	ck_assert_int_eq((long)r, 0);	/* not EWOULDBLOCK after 2 s */
	ck_assert(!BUF_LOCKINUSE(&lbuf));
}
END_TEST
#endif /* INVARIANTS */

struct node {
	struct buf_rb_node n;
	int in;
};

START_TEST(test_rbtree)
{
	struct buf_rb_tree t = BUF_RB_INITIALIZER;
	static struct node nodes[2000];
	struct buf_rb_node *p;
	int i, k, cnt = 0;
	off_t last;

	srandom(42);
	for (i = 0; i < 20000; i++) {
		k = (int)(random() % 2000);
		if (nodes[k].in) {
			buf_rb_remove(&t, &nodes[k].n);
			nodes[k].in = 0;
			cnt--;
		} else {
			ck_assert_ptr_null(buf_rb_insert(&t, &nodes[k].n,
			    (off_t)k * 4096));
			nodes[k].in = 1;
			cnt++;
		}
		if (i % 97 == 0)
			ck_assert_int_ge(buf_rb_check(&t), 0);
	}
	ck_assert_int_eq(t.rbt_count, cnt);
	last = -1;
	for (p = buf_rb_first(&t); p; p = buf_rb_next(p)) {
		ck_assert(p->rbn_key > last);
		last = p->rbn_key;
		ck_assert_ptr_eq(buf_rb_lookup(&t, p->rbn_key), p);
	}
	for (k = 0; k < 2000; k++) {
		p = buf_rb_nfind(&t, (off_t)k * 4096 - 1);
		if (nodes[k].in)
			ck_assert_ptr_eq(p, &nodes[k].n);
	}
}
END_TEST

START_TEST(test_bufstats)
{
	long v;
	char text[8192];

	ck_assert_int_eq(bufstat_get("nosuch", &v), ENOENT);
	ck_assert_int_eq(bufstat_set("bufspace", 1), EPERM);
	ck_assert_int_eq(bufstat_set("flushperqueue", 0), EINVAL);
	ck_assert_int_eq(bufstat_set("flushperqueue", 77), 0);
	ck_assert_int_eq(bufstat_get("flushperqueue", &v), 0);
	ck_assert_int_eq(v, 77);
	ck_assert_int_eq(bufstat_set("nosuch", 1), ENOENT);
	ck_assert_uint_lt(bufstat_format(text, sizeof(text)), sizeof(text));
	ck_assert_ptr_nonnull(strstr(text, "hidirtybufspace "));
	ck_assert_ptr_nonnull(strstr(text, "cachehits "));
	ck_assert_int_gt(bufstat_count(), 30);
}
END_TEST

static Suite *
synch_suite(void)
{
	Suite *s = suite_create("synch");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_tsleep_timeout);
	tcase_add_test(tc, test_wakeup);
	tcase_add_test(tc, test_interlock_not_lost);
	tcase_add_test(tc, test_wakeup_one);
	tcase_add_test(tc, test_buf_kernproc);
	tcase_add_test(tc, test_buf_timelock);
#ifdef INVARIANTS
	tcase_add_test(tc, test_buf_lock_no_lost_wakeup);
#endif
	tcase_add_test(tc, test_rbtree);
	tcase_add_test(tc, test_bufstats);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(synch_suite());
	int nfailed;

	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	nfailed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return nfailed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
