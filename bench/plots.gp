# Plots of a bench/run.sh run: gnuplot -e "dir='OUT_DIR'" bench/plots.gp
# Reads OUT_DIR/plot-*.dat and plot-meta.gp (bench/report.js summary); writes OUT_DIR/PREFIX-cost.png
# (per load: server CPU per event and delivery p99 at each rate level, a line per contender; points:
# medians over rounds, error bars: min to max) and, with deploy runs, OUT_DIR/PREFIX-deploy.png.
# PREFIX: bench-nginx behind nginx, bench direct.
load dir.'/plot-meta.gp'
nloads = words(loads)
set terminal pngcairo size (nloads < 2 ? 900 : 520 * nloads), 860 font ",10" noenhanced
set grid ytics lc rgb "#dddddd"
set key below font ",8"
set yrange [0:*]
set xrange [-0.3:nlevels - 0.7]
set xlabel '% of what the machine sustains'
set xtics ()
do for [i = 1:nlevels] { set xtics add (word(levels, i).(word(levels, i) eq 'max' ? '' : ' %%') i - 1) }
colors = "#1b9e77 #d95f02 #7570b3 #e7298a #66a61e #e6ab02 #a6761d #666666 #1f78b4"
do for [k = 1:9] { set linetype k lc rgb word(colors, k) lw 2 pt 7 }

set output dir.'/'.prefix.'-cost.png'
set multiplot layout 2, nloads title title_line."\n".machine
do for [row = 0:1] {
  do for [i = 1:nloads] {
    file = dir.'/plot-'.word(loads, i).'.dat'
    set title word(loads, i).(row == 0 ? ': server CPU, µs per event (lower is better)' : ': delivery p99, ms (lower is better)')
    plot for [c = 0:ncont - 1] file using ($1 + 0.04 * c):(column(3 + 6 * c + 3 * row)):(column(4 + 6 * c + 3 * row)):(column(5 + 6 * c + 3 * row)) \
         with yerrorlines lt c + 1 title word(names, c + 1)
  }
}
unset multiplot

if (deploys > 0) {
  set output dir.'/'.prefix.'-deploy.png'
  set terminal pngcairo size 1100, 520 font ",10" noenhanced
  set style fill solid 0.8 border -1
  set style data histograms
  set style histogram clustered gap 1
  set xtics nomirror rotate by -20 scale 0
  set xlabel ''
  set autoscale x
  set multiplot layout 1, 2 title "deploy under load: pm2 reload and SIGKILL of one worker\n".title_line
  set title 'failed requests (lower is better)'
  plot dir.'/plot-deploy.dat' using 2:xtic(1) title 'pm2 reload', '' using 4 title 'SIGKILL'
  set title sprintf('clients that noticed nothing, of %d (higher is better)', clients)
  plot dir.'/plot-deploy.dat' using 3:xtic(1) title 'pm2 reload', '' using 5 title 'SIGKILL'
  unset multiplot
}
