# sfupdate A/B slot selection for U-Boot (RAUC's variables; docs/deploy.md).
# Build: mkimage -A arm64 -T script -C none -n sfupdate -d boot.cmd boot.scr
#
# The agent keeps the authority (secure storage) and mirrors it here:
#   BOOT_ORDER   slots to try in order ("B A": trial B first, then confirmed A)
#   BOOT_x_LEFT  tries left; a slot at 0 is skipped
# This script spends a try BEFORE booting a slot and saves the environment, so a slot that
# hangs or panics runs out of tries and the next slot in BOOT_ORDER boots. The kernel gets
# sfu.slot=X; `sfu board linux mark-good` then tells the agent's kernel what happened.
#
# Board-specific: sfu_dev (e.g. "mmc 0"), sfu_part_A / sfu_part_B (partition numbers),
# sfu_label_A / sfu_label_B (GPT labels, for root=), and the kernel/fdt load lines at the end.

test -n "${BOOT_ORDER}" || setenv BOOT_ORDER "A"
test -n "${BOOT_A_LEFT}" || setenv BOOT_A_LEFT 3
test -n "${BOOT_B_LEFT}" || setenv BOOT_B_LEFT 0
test -n "${sfu_dev}" || setenv sfu_dev "mmc 0"
test -n "${sfu_part_A}" || setenv sfu_part_A 2
test -n "${sfu_part_B}" || setenv sfu_part_B 3
test -n "${sfu_label_A}" || setenv sfu_label_A rootfs-a
test -n "${sfu_label_B}" || setenv sfu_label_B rootfs-b

setenv sfu_slot
for s in ${BOOT_ORDER}; do
    if test -z "${sfu_slot}"; then
        if test "${s}" = "A" && test ${BOOT_A_LEFT} -gt 0; then
            setexpr BOOT_A_LEFT ${BOOT_A_LEFT} - 1
            setenv sfu_slot A
            setenv sfu_part ${sfu_part_A}
            setenv sfu_label ${sfu_label_A}
        elif test "${s}" = "B" && test ${BOOT_B_LEFT} -gt 0; then
            setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1
            setenv sfu_slot B
            setenv sfu_part ${sfu_part_B}
            setenv sfu_label ${sfu_label_B}
        fi
    fi
done

if test -z "${sfu_slot}"; then
    # Every listed slot is out of tries: the confirmed slot (last in BOOT_ORDER) failed to
    # reach mark-good three boots in a row. There is nothing older to fall back to (it is
    # below the rollback floor), so keep booting it without counting and let it be seen.
    for s in ${BOOT_ORDER}; do setenv sfu_slot ${s}; done
    if test "${sfu_slot}" = "A"; then
        setenv sfu_part ${sfu_part_A}
        setenv sfu_label ${sfu_label_A}
    else
        setenv sfu_part ${sfu_part_B}
        setenv sfu_label ${sfu_label_B}
    fi
    echo "sfupdate: no slot has tries left; booting ${sfu_slot} uncounted"
fi

saveenv
echo "sfupdate: booting slot ${sfu_slot} (A left ${BOOT_A_LEFT}, B left ${BOOT_B_LEFT})"
setenv bootargs "${bootargs} root=PARTLABEL=${sfu_label} rootwait ro sfu.slot=${sfu_slot}"
load ${sfu_dev}:${sfu_part} ${kernel_addr_r} /boot/Image
load ${sfu_dev}:${sfu_part} ${fdt_addr_r} /boot/${fdtfile}
booti ${kernel_addr_r} - ${fdt_addr_r}
