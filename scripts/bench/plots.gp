# Plots of a scripts/bench.sh run: gnuplot -e "dir='OUT_DIR'" scripts/bench/plots.gp
# Reads OUT_DIR/plot-*.dat (scripts/bench/report.js); writes OUT_DIR/bench-throughput.png,
# bench-p99.png (per contender at the headline worker count) and bench-workers.png (per worker count).
# Bars and points are medians over rounds; error bars span min to max.
load dir.'/plot-meta.gp'
nloads = words(loads)
set terminal pngcairo size 440 * nloads, 540 font ",11" noenhanced
set style fill solid 0.8 border -1
set boxwidth 0.6
set grid ytics lc rgb "#dddddd"
set xtics nomirror scale 0
set ytics nomirror
set yrange [0:*]
set offsets 0.5, 0.5, 0, 0
colors = "#1b9e77 #d95f02 #7570b3 #888888"
set linetype 1 lc rgb word(colors, 1)
set linetype 2 lc rgb word(colors, 2)
set linetype 3 lc rgb word(colors, 3)
set linetype 4 lc rgb word(colors, 4)

do for [kind in "rps p99"] {
  file = dir.'/plot-'.kind.'.dat'
  set output dir.'/bench-'.(kind eq 'rps' ? 'throughput' : 'p99').'.png'
  set multiplot layout 1, nloads title sprintf("%s, %d workers, median of %d round(s), bars: min-max\n%s", \
      (kind eq 'rps' ? 'throughput: Socket.IO events delivered per second (higher is better)' : 'delivery latency p99, ms (lower is better)'), \
      headline, rounds, machine)
  do for [i = 1:nloads] {
    c = 2 + 3 * (i - 1)
    set title word(loads, i)
    set ylabel (kind eq 'rps' ? 'events/s' : 'p99 ms')
    plot file using 0:c:($0 + 1):xtic(1) with boxes lc variable notitle, \
         '' using 0:c:c+1:c+2 with yerrorbars lc rgb "black" pt 0 notitle, \
         '' using 0:(column(c + 2)):(sprintf("%d", column(c))) with labels offset 0, 0.8 notitle
  }
  unset multiplot
}

set output dir.'/bench-workers.png'
set terminal pngcairo size 440 * nloads, 880 font ",11" noenhanced
set multiplot layout 2, nloads title sprintf("per worker count: median of %d round(s), bars: min-max; fork mode has 1 worker (dashed)\n%s", rounds, machine)
set xlabel 'workers'
set xtics 1
set offsets 0, 0, 0, 0
set key below horizontal
names = "sio-steer nginx-hash sticky"
do for [row = 0:1] {
  do for [i = 1:nloads] {
    file = dir.'/plot-workers-'.word(loads, i).'.dat'
    set title word(loads, i).(row == 0 ? ': events/s' : ': p99 ms')
    set ylabel (row == 0 ? 'events/s' : 'p99 ms')
    o = 2 + 3 * row
    # fork (4th contender) is the same measurement at every worker count: a horizontal line
    stats file using (column(o + 18)) nooutput
    forkv = STATS_max
    stats file using 1 nooutput
    set xrange [STATS_min - 0.3 : STATS_max + 0.3]
    plot for [k = 0:2] file using 1:(column(o + 6 * k)):(column(o + 6 * k + 1)):(column(o + 6 * k + 2)) \
           with yerrorlines lt k + 1 lw 2 pt 7 title word(names, k + 1), \
         forkv with lines lt 4 lw 2 dt 2 title 'PM2 fork x1'
  }
}
unset multiplot
