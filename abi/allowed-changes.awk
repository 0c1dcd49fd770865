# allowed-changes.awk: reads an abidiff report (scripts/check-abi.sh abidiff) and prints every
# line that is not part of a change ABI.md allows: added functions, and public structs grown by
# fields appended at their end (every public struct starts with struct_size and travels by
# pointer, so an old client's shorter struct stays valid). Exits 1 if anything else changed.
#
# The report is read here because libabigail's suppression for this case
# (has_data_member_inserted_at = end) also hides a field whose type changed.
function flag(why) { print "  " why ": " $0; bad = 1 }
{
    line = $0
    sub(/^[ \t]+/, "", line)
    if (line == "") next
    if (line ~ /^Functions changes summary: 0 Removed, [0-9]+ Changed( \([0-9]+ filtered out\))?, [0-9]+ Added functions?$/) next
    if (line ~ /^Variables changes summary: 0 Removed, 0 Changed( \([0-9]+ filtered out\))?, 0 Added variables?$/) next
    if (line ~ /^[0-9]+ Added functions?:$/ || line ~ /^\[A\] 'function /) next
    if (line ~ /^[0-9]+ functions? with some indirect sub-type changes?:$/) next
    if (line ~ /^\[C\] 'function .* has some indirect sub-type changes:$/) next
    if (line ~ /^parameter [0-9]+ of type '.*' has sub-type changes:$/) next
    if (line ~ /^return type has sub-type changes:$/) next
    if (line ~ /^in (pointed to|unqualified underlying) type '[^']*'( at [^ ]+)?:$/) next
    if (line ~ /^underlying type 'struct axl_[a-z0-9_]+'( at .*)? changed:$/) next
    if (line ~ /^type size changed from [0-9]+ to [0-9]+ \(in bits\)$/) {
        split(line, w, " "); old_size = w[5] + 0; new_size = w[7] + 0
        if (new_size < old_size) flag("a struct shrank")
        next
    }
    if (line ~ /^[0-9]+ data member insertions?:$/) next
    if (line ~ /^'.*', at offset [0-9]+ \(in bits\)/) {
        match(line, /at offset [0-9]+/); offset = substr(line, RSTART + 10, RLENGTH - 10) + 0
        if (offset < old_size) flag("a field inserted before the end")
        next
    }
    flag("not an allowed change")
}
END { exit bad }
