/* The secure state of the sfupdate kernel (src/sfupdate/kernel/state.py), abstracted.
 *
 * Bounds (docs/model.md): image versions 1..NV, signing keys F1 and F2 (firmware anchors),
 * REC (the recovery anchor) and X (no anchor: an unauthentic image), remote command numbers
 * 1..NC in exhaustive runs, TRIES boot attempts per trial (DEFAULT_TRIES in the code), ROOM
 * unacknowledged operator events (PINNED_CAPACITY - TAMPER_RESERVE in the code).
 */

#ifndef NV
#define NV 3
#endif
#ifndef NC
#define NC 3
#endif
#ifndef TRIES
#define TRIES 3
#endif
#ifndef ROOM
#define ROOM 30
#endif

/* keys */
#define F1 0
#define F2 1
#define REC 2
#define X 3

/* slot status (SlotStatus) */
#define EMPTY 0
#define INVALID 1
#define TRIAL 2
#define CONFIRMED 3
#define SUPERSEDED 4
#define BAD 5

#define NONE 2 /* no slot (trial, booted) */

/* An image is (version, signer, healthy); 0 is no image (a record) or garbage (content).
 * The image's digest, size, vendor and class are one-to-one with this triple. */
#define IMG(v, s, h) ((v) * 8 + (s) * 2 + (h))
#define VER(i) ((i) / 8)
#define SGN(i) (((i) / 2) % 4)
#define HLT(i) ((i) % 2)
#define GARBAGE 0
#define FIRST IMG(1, F1, 1) /* the provisioned image */

/* operation results */
#define OK 0
#define REFUSED 1
#define CUT 2
#define HALT 3

/* --- the state in secure storage ------------------------------------------------------ */
byte st[2];     /* slot status */
byte rec[2];    /* the image facts recorded for the slot (ImageRecord) */
bit conf;       /* the confirmed slot */
byte trial;     /* the trial slot or NONE */
byte tries;     /* tries_left */
byte floor;     /* the rollback floor */
byte booted;    /* the slot the last boot started, or NONE */
bit th;         /* trial_healthy */
byte rvk;       /* revoked firmware anchors: bit F1, bit F2 (REC is never revocable) */
bit quar;       /* quarantined (on the one recovery anchor) */
int last;       /* the last accepted remote command number */
byte pins;      /* pinned (unacknowledged) operator events */

/* --- what the Rich OS can write: each slot's bytes and header --------------------------- */
byte con[2];    /* the image in the slot's storage, or GARBAGE */

/* --- ghosts: observations for the properties, never read by the transitions ------------- */
bit gh[2];      /* the image recorded in the slot booted as a trial and passed its health check */
bit envw[2];    /* the Rich OS wrote the slot's storage last (not the agent) */
int acc;        /* bit n: command n was accepted (only for n < 31) */
byte pfloor;    /* the floor at the previous operation */

/* --- the operation being run (arguments reset after it, so they cost no states) --------- */
byte op;
byte a1;        /* install: image; tamper: slot; command: action */
byte a2;        /* tamper: image; command: authenticity (0 forged, 1 valid, 2 expired) */
int a3;         /* command: number */
byte cut;       /* 0: no cut; 2k-1: cut during event k; 2k: cut right after event k */
byte result;

/* scratch of one operation (inside a d_step: never part of a stored state) */
hidden byte ev;          /* events (storage writes, the slot write) so far */
hidden byte dead;        /* the power was cut */
hidden byte s, img, k;
hidden byte ok, istrial, changed;
hidden byte o_st0, o_st1, o_rec0, o_rec1, o_conf, o_trial, o_tries, o_floor, o_booted, o_th,
            o_rvk, o_quar, o_pins;
hidden int o_last;
hidden byte w_floor, w_rvk;
hidden int w_last;

#define REVOKED(k) ((rvk >> (k)) & 1)
/* an active firmware or recovery anchor (TrustStore.boot_anchor) */
#define ACTIVE(k) ((k) == REC || ((k) < 2 && !REVOKED(k)))
/* SecureState.install_keys: the active firmware anchors, or under quarantine the recovery one */
#define INSTALLABLE(k) (quar -> (k) == REC : ((k) < 2 && !REVOKED(k)))
#define RUNSLOT (booted == NONE -> conf : booted)
#define RUNIMG (rec[RUNSLOT] != 0 -> rec[RUNSLOT] : rec[conf])
#define MAX(a, b) ((a) > (b) -> (a) : (b))
#define LIMIT MAX(MAX(floor, VER(rec[conf])), VER(RUNIMG))
/* verify_slot: the slot's stored image is the recorded one, its recorded signer is an active
 * anchor and its version is not below the floor */
#ifdef BROKEN_VERIFY
/* broken: trusts the slot's own (self-consistent) header, never the recorded facts */
#define VERIFIES(x) (con[x] != GARBAGE && VER(con[x]) >= floor)
#else
#define VERIFIES(x) (rec[x] != 0 && con[x] == rec[x] && ACTIVE(SGN(rec[x])) && VER(rec[x]) >= floor)
#endif

/* --- properties: each is compiled in on its own (-DPROP_A ...) -------------------------- */
#ifdef PROP_A
#define CHECK_A(e) assert(e)
#else
#define CHECK_A(e) skip
#endif
#ifdef PROP_B
#define CHECK_B(e) assert(e)
#else
#define CHECK_B(e) skip
#endif
#ifdef PROP_C
#define CHECK_C(e) assert(e)
#else
#define CHECK_C(e) skip
#endif
#ifdef PROP_D
#define CHECK_D(e) assert(e)
#else
#define CHECK_D(e) skip
#endif
#ifdef PROP_E
#define CHECK_E(e) assert(e)
#else
#define CHECK_E(e) skip
#endif
#ifdef PROP_F
#define CHECK_F(e) assert(e)
#else
#define CHECK_F(e) skip
#endif
#ifdef PROP_INV
#define CHECK_INV(e) assert(e)
#else
#define CHECK_INV(e) skip
#endif

/* Reachability witnesses: with -DCOVER, reaching REACHED(n) the first time is an "error"
 * (assertion !(n)); pan -c0 goes on and reports each one reached (tests/model/test_spin.py):
 * the exhaustive search does reach every interesting transition. */
#ifdef COVER
hidden int seen;  /* hidden: outside the state vector, kept across the whole search */
#define REACHED(n) if :: !((seen >> (n)) & 1) -> seen = seen | (1 << (n)); assert(!(n)) \
  :: else -> skip fi
#else
#define REACHED(n) skip
#endif

inline snapshot() {
  o_st0 = st[0]; o_st1 = st[1]; o_rec0 = rec[0]; o_rec1 = rec[1]; o_conf = conf;
  o_trial = trial; o_tries = tries; o_floor = floor; o_booted = booted; o_th = th;
  o_rvk = rvk; o_quar = quar; o_pins = pins; o_last = last
}

#define BOOT_SAME (o_st0 == st[0] && o_st1 == st[1] && o_rec0 == rec[0] && o_rec1 == rec[1] \
  && o_conf == conf && o_trial == trial && o_tries == tries && o_floor == floor \
  && o_booted == booted && o_th == th)
#define REST_SAME (o_rvk == rvk && o_quar == quar && o_pins == pins)
#define ALL_SAME (BOOT_SAME && REST_SAME && o_last == last)

/* BootRecord.check() and SecureState.check(): what the kernel's save re-checks */
#define STORED_OK (st[conf] == CONFIRMED && rec[conf] != 0 && st[1 - conf] != CONFIRMED \
  && ((trial == NONE) == (st[1 - conf] != TRIAL)) && trial != conf \
  && VER(rec[conf]) >= floor \
  && (trial == NONE || (rec[trial] != 0 && VER(rec[trial]) > floor)) \
  && (trial != NONE || tries == 0) && (!th || (trial != NONE && booted == trial)) \
  && ACTIVE(SGN(rec[conf])))
/* SecureState.check_successor(): nothing monotonic goes down, nothing is un-revoked */
#define SUCCESSOR_OK (floor >= w_floor && last >= w_last && (rvk & w_rvk) == w_rvk)

/* One atomic secure-storage write (Kernel._save): the power cut `cut` falls before it (the
 * old state stays) or right after it. Call write_begin(), apply the new state if !dead, then
 * write_end(). A write that changes nothing is no write (Kernel._save skips it): callers
 * with such a case do not call these. */
inline write_begin() {
  ev++;
  w_floor = floor; w_rvk = rvk; w_last = last;
  dead = (cut == 2 * ev - 1)
}
inline write_end() {
  if
  :: !dead -> CHECK_INV(STORED_OK); CHECK_INV(SUCCESSOR_OK)
  :: else -> skip
  fi;
  dead = dead || (cut == 2 * ev)
}

/* _reject: the trial becomes BAD */
inline reject() {
  st[trial] = BAD; trial = NONE; tries = 0; th = 0
}
