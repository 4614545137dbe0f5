/* A model of the sfupdate secure-state kernel and everything around it that can act on it:
 * the agent's install, the boot code, confirm/reject, signed remote commands, the Rich OS
 * writing slot storage, and a power cut at every write. docs/model.md explains it.
 *
 *   spin -a -DPROP_A -DROOM=2 kernel.pml && gcc -O2 -DSAFETY -o pan pan.c && ./pan
 *
 * Modes: exhaustive (the default: pan explores every choice), WALK (a random walk of
 * WALK_OPS operations in spin's simulator: spin -DWALK -n SEED kernel.pml) and TRACE (a
 * driver file defines TRACE_LEN and load_trace() and includes this file: spin replays the
 * operations it lists). Every operation prints the abstract state after it ("ST ...").
 */

#include "state.pml"
#include "ops.pml"

#ifdef TRACE
byte t_op[TRACE_LEN];
byte t_a1[TRACE_LEN];
byte t_a2[TRACE_LEN];
int t_a3[TRACE_LEN];
byte t_cut[TRACE_LEN];
int t_i;
#endif

/* uniform choices in the simulator (select() favours small values there) */
inline pick_version(x) {
  if
  :: x = 1
  :: NV >= 2 -> x = 2
  :: NV >= 3 -> x = 3
  :: NV >= 4 -> x = 4
  fi
}

byte pv;  /* the version picked (not hidden: a choice must be part of the stored state) */

inline pick_image(x) {  /* any image: any version, any signer (X: unauthentic), healthy or not */
  pick_version(pv);
  if
  :: x = IMG(pv, F1, 1)
  :: x = IMG(pv, F1, 0)
  :: x = IMG(pv, F2, 1)
  :: x = IMG(pv, F2, 0)
  :: x = IMG(pv, REC, 1)
  :: x = IMG(pv, REC, 0)
  :: x = IMG(pv, X, 1)
  :: x = IMG(pv, X, 0)
  fi;
  pv = 0
}

#ifdef WALK
inline pick_next(x) {  /* an image of the next version an install accepts */
  pv = (LIMIT < NV -> LIMIT + 1 : NV);
  if
  :: quar -> x = IMG(pv, REC, 1)
  :: quar -> x = IMG(pv, REC, 0)
  :: x = IMG(pv, F1, 1)
  :: x = IMG(pv, F2, 1)
  :: x = IMG(pv, REC, 1)
  :: x = IMG(pv, F1, 0)
  :: x = IMG(pv, F2, 0)
  fi;
  pv = 0
}
#endif

inline pick_cut(n) {  /* no cut, or a cut during or right after any of the events */
  if
  :: cut = 0
#ifdef WALK
  :: cut = 0
  :: cut = 0
  :: cut = 0
  :: cut = 0
#endif
  :: cut = 1
  :: cut = 2
  :: n >= 3 -> cut = 3
  :: n >= 4 -> cut = 4
  :: n >= 5 -> cut = 5
  :: n >= 6 -> cut = 6
  :: n >= 7 -> cut = 7
  :: n >= 8 -> cut = 8
  fi
}

inline pick_command() {
  if
  :: a1 = A_NOP
  :: a1 = A_REVERT
  :: a1 = A_QUAR
  :: a1 = A_RELEASE
  :: a1 = A_REVOKE_F1
  :: a1 = A_REVOKE_F2
  :: a1 = A_ACK
  fi;
#ifdef WALK
  if
  :: a2 = 0
  :: a2 = 1
  :: a2 = 1
  :: a2 = 1
  :: a2 = 1
  :: a2 = 2
  fi;
  if
  :: a3 = last + 1
  :: a3 = last + 1
  :: a3 = last + 1
  :: last > 0 -> a3 = last  /* a replay */
  :: a3 = last + 3
  fi;
  pick_cut(2)
#else
  /* every command refused before it is spent is the same: one of them stands for all */
  if
  :: a2 = 0; a1 = 0
  :: last < NC -> a2 = 1; a3 = last + 1
  :: last + 2 <= NC -> a2 = 1; a3 = last + 2
  :: last > 0 -> a2 = 1; a3 = last  /* a replay */
  fi;
  if
  :: SPENDS -> pick_cut(2)
  :: else -> a1 = 0  /* refused: the action does not matter */
  fi
#endif
}

/* What the Rich OS writes into slot a1: anything, in random walks (or with FULL_TAMPER).
 * Exhaustively, as every content but the recorded image fails verification the same way,
 * a representative set: garbage, the recorded image put back, the other slot's content,
 * an unauthentic image of the newest version and the provisioned (old, authentic) image. */
inline pick_tamper() {
  if
  :: a1 = 0
  :: a1 = 1
  fi;
#if defined(WALK) || defined(FULL_TAMPER)
  if
  :: a2 = GARBAGE
  :: pick_image(a2)
#ifdef WALK
  :: a2 = rec[a1]  /* a repair: what the agent wrote, put back */
  :: a2 = rec[a1]
#endif
  fi
#else
  if
  :: a2 = GARBAGE
  :: a2 = rec[a1]
  :: a2 = con[1 - a1]
  :: a2 = IMG(NV, X, 1)
  :: a2 = FIRST
  fi
#endif
}

inline choose() {
  if
  :: op = OP_INSTALL; pick_image(a1);
     if  /* a refused install writes nothing: no cut to choose */
     :: INSTALL_ALLOWED(a1) -> pick_cut(6)
     :: else -> skip
     fi
  :: op = OP_BOOT; pick_cut(8)
  :: op = OP_CONFIRM; pick_cut(2)
  :: op = OP_REJECT; pick_cut(2)
  :: op = OP_COMMAND; pick_command()
  :: op = OP_TAMPER; pick_tamper()
#ifdef WALK  /* walks that go somewhere: more installs of the next version, boots, confirms */
  :: op = OP_INSTALL; pick_next(a1); pick_cut(6)
  :: op = OP_INSTALL; pick_next(a1); pick_cut(6)
  :: op = OP_INSTALL; pick_next(a1); pick_cut(6)
  :: op = OP_BOOT; pick_cut(8)
  :: op = OP_BOOT; pick_cut(8)
  :: op = OP_CONFIRM; pick_cut(2)
  :: trial != NONE && booted != trial -> op = OP_BOOT; pick_cut(8)
  :: trial != NONE && booted != trial -> op = OP_BOOT; pick_cut(8)
  :: th -> op = OP_CONFIRM; pick_cut(2)
  :: th -> op = OP_CONFIRM; pick_cut(2)
  :: th -> op = OP_CONFIRM; pick_cut(2)
  :: op = OP_COMMAND; pick_command()
#endif
  fi
}

init {
  d_step {  /* provisioning: FIRST confirmed in slot A, no boot yet */
    st[0] = CONFIRMED; rec[0] = FIRST; con[0] = FIRST; gh[0] = 1;
    st[1] = EMPTY; rec[1] = 0; con[1] = GARBAGE;
    conf = 0; trial = NONE; tries = 0; floor = VER(FIRST); pfloor = floor; booted = NONE
  }
#ifdef TRACE
  load_trace();
  do
  :: t_i < TRACE_LEN ->
     op = t_op[t_i]; a1 = t_a1[t_i]; a2 = t_a2[t_i]; a3 = t_a3[t_i]; cut = t_cut[t_i];
     d_step { run_op() };
     t_i++
  :: else -> break
  od
#else
#ifdef WALK
  byte n;
  do
  :: n < WALK_OPS ->
     choose();
     printf("OP %d %d %d %d %d\n", op, a1, a2, a3, cut);
     d_step { run_op() };
     n++
  :: else -> break
  od
#else
  do
  :: atomic { choose(); d_step { run_op() } }
  od
#endif
#endif
}
