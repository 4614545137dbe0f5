/* The operations: the kernel's transitions as the agent, the boot code and the remote
 * commands drive them (src/sfupdate/kernel/state.py, agent/install.py, boot/stage2.py), and
 * what the Rich OS does to slot storage. Each runs inside one d_step, deterministic given
 * its arguments (op, a1, a2, a3, cut): every choice is an argument the environment picks. */

#define OP_INSTALL 1
#define OP_BOOT 2
#define OP_CONFIRM 3
#define OP_REJECT 4
#define OP_COMMAND 5
#define OP_TAMPER 6

/* command actions */
#define A_NOP 0       /* inspect, reboot: nothing the model tracks besides the number */
#define A_REVERT 1
#define A_QUAR 2      /* quarantine on the recovery anchor */
#define A_RELEASE 3
#define A_REVOKE_F1 4
#define A_REVOKE_F2 5
#define A_ACK 6       /* acknowledge every event logged so far */

#ifdef BROKEN_CONFIRM
#define CONFIRMABLE (booted == trial)          /* broken: no passed health check needed */
#else
#define CONFIRMABLE (booted == trial && th)
#endif
#ifdef BROKEN_REPLAY
#define FRESH(n) ((n) >= last)                  /* broken: off by one */
#else
#define FRESH(n) ((n) > last)
#endif
/* refused before it is spent: forged or expired (a2 != 1), a number not above the last, or
 * (but for acknowledge) no room in the event log */
#define SPENDS (a2 == 1 && FRESH(a3) && (a1 == A_ACK || pins < ROOM))
#ifdef BROKEN_REVOKE
#define SIGNED_CONFIRMED(k) (0)                 /* broken: forgets the confirmed image */
#else
#define SIGNED_CONFIRMED(k) (SGN(rec[conf]) == (k))
#endif
#ifdef BROKEN_FLOOR
/* broken: with no trial, "revert" goes back to the previous confirmed image */
#define BACK_TO_PREVIOUS (trial == NONE && st[1 - conf] == SUPERSEDED)
#else
#define BACK_TO_PREVIOUS (0)
#endif

/* --- install (agent/install.py) ------------------------------------------------------- */

inline begin_install() {  /* SecureState.begin_install: one write, unless nothing changes */
  changed = (st[s] != INVALID || rec[s] != 0 || trial != NONE || tries != 0 || th);
  if
  :: changed ->
     write_begin();
     if
     :: !dead -> st[s] = INVALID; rec[s] = 0; trial = NONE; tries = 0; th = 0; gh[s] = 0
     :: else -> skip
     fi;
     write_end()
  :: else -> skip
  fi
}

inline slot_write() {  /* not atomic: a cut during it leaves garbage */
  ev++;
  envw[s] = 0;
  if
  :: cut == 2 * ev - 1 -> con[s] = GARBAGE; dead = 1; REACHED(2)
  :: else -> con[s] = img; dead = (cut == 2 * ev)
  fi
}

inline record_trial() {  /* SecureState.record_trial (its re-checks hold: nothing ran since) */
  write_begin();
  if
  :: !dead -> st[s] = TRIAL; rec[s] = img; trial = s; tries = TRIES; th = 0; gh[s] = 0;
     REACHED(1)
  :: else -> skip
  fi;
  write_end()
}

/* authenticate with install_keys(), check_install(), install_slot(): before any write */
#ifdef BROKEN_SLOT
#define INSTALL_ALLOWED(i) (SGN(i) != X && INSTALLABLE(SGN(i)) && VER(i) > LIMIT)
#define INSTALL_SLOT (1 - RUNSLOT)  /* broken: the slot that does not run, confirmed or not */
#else
#define INSTALL_ALLOWED(i) (SGN(i) != X && INSTALLABLE(SGN(i)) && VER(i) > LIMIT \
  && RUNSLOT == conf)
#define INSTALL_SLOT (1 - conf)
#endif

inline install() {
  img = a1;
  ok = INSTALL_ALLOWED(img);
  s = INSTALL_SLOT;
#ifdef BROKEN_REFUSAL
  begin_install();         /* broken: the slot is invalidated before the checks */
#endif
  if
  :: dead -> result = CUT
  :: !dead && !ok -> result = REFUSED; CHECK_E(ALL_SAME)
  :: else ->
#ifndef BROKEN_REFUSAL
     begin_install();
#endif
     if
     :: !dead -> slot_write()
     :: else -> skip
     fi;
     if
     :: !dead -> record_trial()
     :: else -> skip
     fi;
     result = (dead -> CUT : OK)
  fi
}

/* --- boot (boot/stage2.py boot_firmware) ------------------------------------------------- */

inline boot() {
  do
  :: true ->
     /* SecureState.start_boot: the trial while it has tries (one spent), else the confirmed
      * slot (a trial out of tries is marked bad). No write if nothing changes. */
     istrial = (trial != NONE && tries > 0);
     changed = (trial != NONE || booted != conf);
     if
     :: changed -> write_begin()
     :: else -> skip
     fi;
     if
     :: !dead && istrial -> tries--; booted = trial; th = 0; s = trial
     :: !dead && !istrial ->
        if
        :: trial != NONE -> reject(); REACHED(5)
        :: else -> skip
        fi;
        booted = conf; s = conf
     :: else -> skip
     fi;
     if
     :: changed -> write_end()
     :: else -> skip
     fi;
     if
     :: dead -> result = CUT; break
     :: else -> skip
     fi;
     if
     :: !VERIFIES(s) && !istrial ->  /* the confirmed slot never runs unverified: halt */
        CHECK_D(con[conf] != rec[conf] && envw[conf]);
        REACHED(7);
        result = HALT; break
     :: !VERIFIES(s) && istrial ->   /* trial_failed */
        REACHED(4);
        write_begin();
        if
        :: !dead -> reject()
        :: else -> skip
        fi;
        write_end();
        if
        :: dead -> result = CUT; break
        :: else -> skip
        fi
     :: else ->                      /* booted: measured, and the health check recorded */
        ok = HLT(con[s]);
        if
        :: istrial && ok -> gh[s] = 1
        :: else -> skip
        fi;
        write_begin();
        if
        :: !dead && istrial && ok -> th = 1; REACHED(3)
        :: !dead && istrial && !ok -> reject()
        :: else -> skip
        fi;
        write_end();
        if
        :: dead -> result = CUT; break
        :: !dead && istrial && !ok -> skip  /* again: the confirmed slot boots */
        :: else ->
           CHECK_A(con[s] != GARBAGE && ACTIVE(SGN(con[s])) && VER(con[s]) >= floor);
           result = OK; break
        fi
     fi
  od
}

/* --- confirm, reject --------------------------------------------------------------------- */

inline confirm() {
  if
  :: (trial == NONE || !CONFIRMABLE || (quar && SGN(rec[trial]) != REC)
      || !ACTIVE(SGN(rec[trial]))) ->
     result = REFUSED; CHECK_E(ALL_SAME)
  :: else ->
     write_begin();
     if
     :: !dead ->
        if
        :: quar && SGN(rec[trial]) == REC -> REACHED(6)
        :: else -> skip
        fi;
        st[trial] = CONFIRMED; st[conf] = SUPERSEDED; floor = MAX(floor, VER(rec[trial]));
        conf = trial; trial = NONE; tries = 0; th = 0;
        if
        :: floor == NV -> REACHED(12)
        :: else -> skip
        fi
     :: else -> skip
     fi;
     write_end();
     result = (dead -> CUT : OK)
  fi
}

inline reject_trial() {
  if
  :: trial == NONE -> result = REFUSED; CHECK_E(ALL_SAME)
  :: else ->
     write_begin();
     if
     :: !dead -> reject()
     :: else -> skip
     fi;
     write_end();
     result = (dead -> CUT : OK)
  fi
}

/* --- signed remote commands (SecureState.execute and the actions) -------------------------- */

inline action() {  /* the command is spent; ok: its action fit the device's state */
  ok = 1;
  if
  :: a1 == A_REVERT && BACK_TO_PREVIOUS ->
     st[conf] = BAD; conf = 1 - conf; st[conf] = CONFIRMED; booted = NONE;
     floor = VER(rec[conf])
  :: a1 == A_REVERT && !BACK_TO_PREVIOUS ->
     if
     :: st[RUNSLOT] == BAD || trial == NONE || RUNSLOT != trial || !VERIFIES(conf) -> ok = 0
     :: else -> reject(); REACHED(8)
     fi
  :: a1 == A_QUAR -> quar = 1
  :: a1 == A_RELEASE ->
     if
     :: quar -> quar = 0
     :: else -> ok = 0
     fi
  :: a1 == A_REVOKE_F1 || a1 == A_REVOKE_F2 ->
     k = a1 - A_REVOKE_F1;
     /* refused: not an active firmware anchor, or it signed the confirmed image (the "last
      * firmware anchor" refusal needs no recovery anchor provisioned: REC always is) */
     if
     :: REVOKED(k) || SIGNED_CONFIRMED(k) -> ok = 0
     :: else ->
        rvk = rvk | (1 << k);
        if
        :: trial != NONE && SGN(rec[trial]) == k -> reject(); REACHED(9)
        :: else -> skip
        fi
     fi
  :: else -> skip
  fi;
  if
  :: !ok -> CHECK_E(BOOT_SAME && o_rvk == rvk && o_quar == quar); REACHED(11)
  :: else -> skip
  fi
}

inline command() {
  if
  :: !SPENDS ->
     if
     :: a2 == 1 && FRESH(a3) -> REACHED(10)  /* no room in the event log */
     :: else -> skip
     fi;
     result = REFUSED; CHECK_E(ALL_SAME)
  :: else ->
     write_begin();
     if
     :: !dead ->
        CHECK_F(a3 >= 31 || !((acc >> a3) & 1));
        if
        :: a3 < 31 -> acc = acc | (1 << a3)
        :: else -> skip
        fi;
#ifndef BROKEN_SPLIT
        last = a3;
#endif
        action();
        if
        :: a1 == A_ACK && ok -> pins = 1  /* all released, then its own event pinned */
        :: else -> pins++
        fi
     :: else -> skip
     fi;
     write_end();
#ifdef BROKEN_SPLIT
     /* broken: the number is spent in a second write, after the action's effect */
     if
     :: !dead ->
        write_begin();
        if
        :: !dead -> last = a3
        :: else -> skip
        fi;
        write_end()
     :: else -> skip
     fi;
#endif
     result = (dead -> CUT : (ok -> OK : REFUSED))
  fi
}

/* --- the Rich OS writes slot storage ------------------------------------------------------ */

inline tamper() {
  con[a1] = a2; envw[a1] = 1; result = OK
}

/* --- one operation, then the properties that hold between operations --------------------- */

inline run_op() {
  ev = 0; dead = 0; ok = 0; changed = 0; istrial = 0; s = 0; img = 0; k = 0;
  snapshot();
  if
  :: op == OP_INSTALL -> install()
  :: op == OP_BOOT -> boot()
  :: op == OP_CONFIRM -> confirm()
  :: op == OP_REJECT -> reject_trial()
  :: op == OP_COMMAND -> command()
  :: op == OP_TAMPER -> tamper()
  fi;
  CHECK_B(floor >= pfloor);
  pfloor = floor;
  CHECK_C(st[conf] == CONFIRMED && gh[conf] && HLT(rec[conf]));
  CHECK_D(st[conf] == CONFIRMED && rec[conf] != 0 && ACTIVE(SGN(rec[conf]))
          && VER(rec[conf]) >= floor && (con[conf] == rec[conf] || envw[conf]));
  printf("ST %d %d %d %d %d %d %d %d %d %d %d %d %d %d %d %d %d %d\n", op, result,
         st[0], st[1], rec[0], rec[1], con[0], con[1], conf, trial, tries, floor, booted, th,
         rvk, quar, last, pins);
  op = 0; a1 = 0; a2 = 0; a3 = 0; cut = 0; result = 0
}
