"""The `linux` board backend: the HAL on a real Linux device (docs/board.md, "The linux
backend"; docs/deploy.md). Secure storage and fuses anchored in a TPM 2.0 (`tpm`, `storage`,
`fuses`), slots on block devices (`slots`), boot control mirrored into U-Boot's or GRUB's
environment (`bootenv`), all from one configuration file (`config`, `board`)."""
