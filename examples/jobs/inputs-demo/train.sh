# Sums the numbers of every CSV file under data/ (the job's inputs, read-only).
cd "$GPUNET_INPUTS" || exit 1
total=0
count=0
for f in data/*.csv; do
  while IFS= read -r n; do
    total=$((total + n))
    count=$((count + 1))
  done < "$f"
done
echo "$count numbers, sum $total"
