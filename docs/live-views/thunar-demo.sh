#!/bin/bash
# Thunar open on DCIM/Camera of a galleryfs mount (default options: poll_interval=30 + push notifications) while
# the "phone" adds one photo and deletes another through the emulator.
set -u
# Run from the repository: docs/live-views/thunar-demo.sh (needs Xvfb, thunar, imagemagick, inotify-tools, curl).
X=${WORKDIR:-/tmp/galleryfs-live-demo}; B=${GALLERYFS:-$PWD/target/debug/galleryfs}; PORT=${PORT:-47833}
PHOTO=${PHOTO:-$PWD/tests/data/photos/nikon_p6000_gps.jpg}
mkdir -p $X
rm -rf $X/home $X/mnt $X/*.png $X/events.txt $X/iw.fifo; mkfifo $X/iw.fifo; mkdir -p $X/home $X/mnt $X/home/run; chmod 700 $X/home/run
export HOME=$X/home XDG_CONFIG_HOME=$X/home/.config XDG_CACHE_HOME=$X/home/.cache XDG_DATA_HOME=$X/home/.local/share XDG_RUNTIME_DIR=$X/home/run
export GALLERYFS_CONFIG_DIR=$X/home/gcfg GALLERYFS_CACHE_DIR=$X/home/gcache
$B emulator --listen 127.0.0.1:$PORT --seed-gallery 8 --auto-approve > $X/emu.log 2>&1 & EMU=$!
sleep 2
$B login --graph-url http://127.0.0.1:$PORT/v1.0 --login-url http://127.0.0.1:$PORT >/dev/null 2>&1
$B mount $X/mnt || exit 1
ls $X/mnt/DCIM/Camera
# A display of our own: Xvfb picks a free number.
Xvfb -displayfd 5 -screen 0 1280x800x24 5>$X/display >/dev/null 2>&1 & XV=$!
sleep 2
export DISPLAY=:$(cat $X/display)
echo "display $DISPLAY"
dbus-run-session -- bash -c "thunar $X/mnt/DCIM/Camera & echo \$! > $X/thunar.pid; wait" > $X/thunar.log 2>&1 &
sleep 10
# Timestamped events, as a watcher on the folder sees them.
inotifywait -m --format '%e %f' $X/mnt/DCIM/Camera 2>/dev/null > $X/iw.fifo & IW=$!
while read -r l; do echo "$(date +%s.%N) $l"; done < $X/iw.fifo > $X/events.txt &
sleep 1
import -window root $X/before.png
C=http://127.0.0.1:$PORT/_emulator; G="/Pictures/Samsung Gallery"
VICTIM=$(ls $X/mnt/DCIM/Camera | head -1)
printf '{"path":"%s","content_base64":"%s"}' "$G/DCIM/Camera/20991231_235959.jpg" "$(base64 -w0 $PHOTO)" > $X/body.json
T0=$(date +%s.%N)
curl -s -XPOST $C/files -H 'content-type: application/json' -d @$X/body.json >/dev/null
curl -s -XPOST $C/delete -H 'content-type: application/json' -d "{\"item\":\"$G/DCIM/Camera/$VICTIM\"}" >/dev/null
echo "phone changes at $T0 (added 20991231_235959.jpg, deleted $VICTIM)"
sleep 8
import -window root $X/after.png
awk -v t0=$T0 '{printf "%+.3f s  %s %s\n", $1 - t0, $2, $3}' $X/events.txt
kill $IW 2>/dev/null; kill $(cat $X/thunar.pid) 2>/dev/null; sleep 2; kill $XV 2>/dev/null
umount -l $XDG_RUNTIME_DIR/doc 2>/dev/null
$B unmount $X/mnt || umount -l $X/mnt
kill $EMU
